// axe-core's WCAG 2.1 A and AA rules on pages of a running Lockbox, in
// Debian's Chromium, through @axe-core/playwright:
//
//   node tests/server/axe_pages.mjs PAGES_JSON
//
// Run from the checkout's root, so that node_modules is found. PAGES_JSON is
// a list of {name, url}. Each page is checked at a phone's and a desktop's
// width, in the light and the dark theme, and kept as a screenshot in
// test-artifacts/ (NAME-WIDTH-THEME.png). Prints one JSON object: for each
// page, width and theme checked, its violations (rule id, impact, help, and
// the first few elements each rule found).
import { mkdirSync } from 'node:fs'
import { AxeBuilder } from '@axe-core/playwright'
import { chromium } from 'playwright-core'

const pages = JSON.parse(process.argv[2] || '[]')
const SIZES = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } }
const THEMES = ['light', 'dark']
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']

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
      for (const { name, url } of pages) {
        await page.goto(url)
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
      }
      await context.close()
    }
  }
} finally {
  await browser.close()
}
console.log(JSON.stringify({ results }))
