// axe-core's WCAG 2.1 A and AA rules on pages of a running Lockbox, in
// Debian's Chromium, through @axe-core/playwright:
//
//   node tests/server/axe_pages.mjs PAGES_JSON
//
// Run from the checkout's root, so that node_modules is found. PAGES_JSON is
// a list of {name, url, steps, undo}. Each page is checked at a phone's and a
// desktop's width, in the light and the dark theme, and kept as a screenshot
// in test-artifacts/ (NAME-WIDTH-THEME.png). Prints one JSON object: for each
// page, width and theme checked, its violations (rule id, impact, help, and
// the first few elements each rule found).
//
// A page that answers a form (a POST) is reached from URL by its optional
// steps, done in order as a person would; its optional undo steps run once
// it is checked, so that the next width and theme find things as they were:
//   {fill: LABEL, value: TEXT}       types TEXT into the field labelled LABEL
//   {fill: LABEL, totpOf: SELECTOR}  types the current six-digit code of the
//                                    two-factor key shown in SELECTOR
//   {fill: LABEL, remembered: NAME}  types what a remember step kept
//   {remember: NAME, textOf: SELECTOR}  keeps the text of SELECTOR
//   {click: NAME, role: ROLE}        presses the button (or the ROLE, e.g.
//                                    link) named NAME and waits for the page
import { createHmac } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { AxeBuilder } from '@axe-core/playwright'
import { chromium } from 'playwright-core'

const pages = JSON.parse(process.argv[2] || '[]')
const SIZES = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } }
const THEMES = ['light', 'dark']
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']

// The code an authenticator app shows now for a base32 key (RFC 6238:
// HMAC-SHA1, 30-second steps, six digits).
function totp (key) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  const bits = [...key.replace(/[\s=]/g, '').toUpperCase()]
    .map((c) => alphabet.indexOf(c).toString(2).padStart(5, '0')).join('')
  const bytes = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)))
  const step = Buffer.alloc(8)
  step.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)))
  const mac = createHmac('sha1', bytes).update(step).digest()
  const at = mac[mac.length - 1] & 15
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1000000).padStart(6, '0')
}

async function run (page, steps, kept) {
  for (const step of steps || []) {
    if (step.remember) {
      kept[step.remember] = (await page.locator(step.textOf).first().innerText()).trim()
    } else if (step.fill) {
      const value = step.totpOf
        ? totp(await page.locator(step.totpOf).innerText())
        : step.remembered ? kept[step.remembered] : step.value
      await page.getByLabel(step.fill, { exact: true }).fill(value)
    } else if (step.click) {
      await Promise.all([
        page.waitForNavigation(),
        page.getByRole(step.role || 'button', { name: step.click, exact: true }).click()
      ])
      await page.waitForLoadState('load')
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`)
    }
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run']
})
mkdirSync('test-artifacts', { recursive: true })
const results = []
try {
  for (const [sizeName, viewport] of Object.entries(SIZES)) {
    for (const theme of THEMES) {
      const context = await browser.newContext({ viewport, colorScheme: theme })
      const page = await context.newPage()
      for (const { name, url, steps, undo } of pages) {
        const kept = {}
        await page.goto(url)
        await page.waitForLoadState('load')
        await run(page, steps, kept)
        await page.waitForLoadState('networkidle')
        const slug = name.replace(/[^a-z0-9]+/gi, '-')
        await page.screenshot({
          path: `test-artifacts/${slug}-${sizeName}-${theme}.png`,
          fullPage: true
        })
        const found = await new AxeBuilder({ page }).withTags(TAGS).analyze()
        results.push({
          page: name,
          size: sizeName,
          theme,
          violations: found.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            help: v.help,
            nodes: v.nodes.slice(0, 3).map((n) => n.html)
          }))
        })
        await run(page, undo, kept)
      }
      await context.close()
    }
  }
} finally {
  await browser.close()
}
console.log(JSON.stringify({ results }))
