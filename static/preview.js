// Draws a PDF in the page with PDF.js (static/vendor/pdfjs, Apache-2.0), from
// the file's own inline download: no browser plugin, and nothing in the PDF
// runs. Without JavaScript the page says to download it instead.
import * as pdfjs from "./vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = new URL(
  "./vendor/pdfjs/pdf.worker.min.mjs",
  import.meta.url,
).href;

// Enough to see what a document is; the rest is in the download.
const MAX_PAGES = 30;

async function show(box) {
  const note = box.querySelector(".pdf-note");
  try {
    const pdf = await pdfjs.getDocument({
      url: box.dataset.pdf,
      // Both would need the page's Content-Security-Policy loosened.
      useWasm: false,
      enableXfa: false,
    }).promise;
    const count = pdf.numPages;
    note.textContent =
      count === 1
        ? "1 page"
        : count + " pages" + (count > MAX_PAGES ? ", the first " + MAX_PAGES + " shown" : "");
    const width = box.clientWidth || 600;
    const ratio = window.devicePixelRatio || 1;
    for (let number = 1; number <= Math.min(count, MAX_PAGES); number += 1) {
      const page = await pdf.getPage(number);
      const scale = (width / page.getViewport({ scale: 1 }).width) * ratio;
      const viewport = page.getViewport({ scale: scale });
      const canvas = document.createElement("canvas");
      canvas.width = Math.floor(viewport.width);
      canvas.height = Math.floor(viewport.height);
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", "Page " + number + " of " + box.dataset.name);
      box.append(canvas);
      await page.render({ canvas: canvas, viewport: viewport }).promise;
    }
    box.dataset.rendered = String(Math.min(count, MAX_PAGES));
  } catch (error) {
    note.textContent = "This PDF cannot be shown here: download it to read it.";
    box.dataset.rendered = "0";
  }
}

document.querySelectorAll(".preview-pdf[data-pdf]").forEach(show);
