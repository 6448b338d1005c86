// One resumable upload with tus-js-client, as a Node.js program would make it.
//
//   node tests/server/tus_client.mjs ENDPOINT TOKEN FILE CHUNK_SIZE [OPTIONS_JSON]
//
// Run from the checkout's root, so that node_modules is found. ENDPOINT is the
// creation URL (…/uploads), or "-" for none: then only OPTIONS.uploadUrl is
// resumed, never a new upload created. TOKEN is sent as a Bearer credential on
// every request, or "-" for none (an upload's URL is its own credential).
// OPTIONS (JSON): uploadUrl (resume that upload), retryDelays (default none),
// metadata, abortAt (a fraction: once that share of the file is accepted,
// call upload.abort()), terminate (abort with upload.abort(true), which also
// deletes the upload on the server).
//
// Prints one JSON object: outcome ("success", "aborted", "terminated" or
// "error"), url, fileId and contentLocation (from the last answer that named
// them), bytesAccepted, bytesTotal, error ({message, status}) and requests
// (method, status, the Upload-Offset sent and answered) in order.
//
// tus-js-client 4.3.1 is CommonJS (its package.json has "main" and no
// "exports"); Node 20 gives an ES module its named exports (Upload, …).
import { createReadStream } from 'node:fs'
import * as tus from 'tus-js-client'

const [endpoint, token, path, chunkSizeArg, optionsJson = '{}'] = process.argv.slice(2)
if (!endpoint || !token || !path || !chunkSizeArg) {
  console.error('usage: tus_client.mjs ENDPOINT TOKEN FILE CHUNK_SIZE [OPTIONS_JSON]')
  process.exit(2)
}
const options = JSON.parse(optionsJson)
const chunkSize = Number(chunkSizeArg)

const result = {
  outcome: null,
  url: null,
  fileId: null,
  contentLocation: null,
  bytesAccepted: 0,
  bytesTotal: null,
  error: null,
  requests: [],
}

function finish(outcome) {
  if (result.outcome !== null) return
  result.outcome = outcome
  result.url = upload.url
  process.stdout.write(`${JSON.stringify(result)}\n`)
  // Nothing else is waited for: a stray retry timer must not keep Node up.
  process.exit(0)
}

let aborting = false

const upload = new tus.Upload(createReadStream(path), {
  endpoint: endpoint === '-' ? null : endpoint,
  uploadUrl: options.uploadUrl ?? null,
  chunkSize,
  retryDelays: options.retryDelays ?? null,
  metadata: options.metadata ?? {},
  headers: token === '-' ? {} : { Authorization: `Bearer ${token}` },
  onBeforeRequest(req) {
    result.requests.push({
      method: req.getMethod(),
      sentOffset: req.getHeader('Upload-Offset') ?? null,
      status: null,
      offset: null,
    })
  },
  onAfterResponse(req, res) {
    const entry = result.requests.findLast((r) => r.status === null)
    if (entry) {
      entry.status = res.getStatus()
      entry.offset = res.getHeader('Upload-Offset') ?? null
    }
    const fileId = res.getHeader('Lockbox-File-Id')
    if (fileId) {
      result.fileId = Number(fileId)
      result.contentLocation = res.getHeader('Content-Location') ?? null
    }
  },
  onChunkComplete(_size, bytesAccepted, bytesTotal) {
    result.bytesAccepted = bytesAccepted
    result.bytesTotal = bytesTotal
    if (options.abortAt != null && !aborting && bytesAccepted >= options.abortAt * bytesTotal) {
      aborting = true
      const terminate = Boolean(options.terminate)
      upload
        .abort(terminate)
        .then(() => finish(terminate ? 'terminated' : 'aborted'))
        .catch((err) => {
          result.error = describe(err)
          finish('error')
        })
    }
  },
  onSuccess() {
    finish('success')
  },
  onError(err) {
    result.error = describe(err)
    finish('error')
  },
})

function describe(err) {
  const response = err.originalResponse ?? null
  return { message: String(err.message ?? err), status: response ? response.getStatus() : null }
}

upload.start()
