// Lockbox: progressive enhancement of the upload page. Everything here also
// works without JavaScript: the form posts, the delete buttons ask on a page.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  if (!form) {
    return;
  }
  const fileInput = document.getElementById("inputFile");
  const dropZone = document.getElementById("drop-zone");
  const uploadButton = document.getElementById("upload-button");
  const cancelButton = document.getElementById("cancel-button");
  const progress = document.getElementById("upload-progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const result = document.getElementById("upload-result");
  const rows = document.getElementById("file-rows");
  const table = document.getElementById("file-table");
  const emptyNote = document.getElementById("empty-note");
  let request = null;

  document.querySelectorAll(".js-only").forEach((el) => { el.hidden = false; });

  function humanSize(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  function showResult(message, ok) {
    result.textContent = message;
    result.className = "flash " + (ok ? "flash-success" : "flash-error");
    result.hidden = false;
  }

  function setBusy(busy) {
    uploadButton.disabled = busy;
    cancelButton.hidden = !busy;
    fileInput.disabled = busy;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    td.textContent = content;
    if (className) {
      td.className = className;
    }
    return td;
  }

  // A new row for a file the server just stored; text only, never HTML.
  function addRow(file) {
    const token = new URL(form.action).searchParams.get("token");
    const tr = document.createElement("tr");
    tr.dataset.fileId = file.id;
    tr.append(
      cell(file.filename, "name"),
      cell(file.description, "description"),
      cell(humanSize(file.size), "num"),
    );
    const when = document.createElement("td");
    const time = document.createElement("time");
    time.dateTime = file.created_at;
    time.textContent = file.created_at.slice(0, 16).replace("T", " ") + " UTC";
    when.append(time);
    tr.append(when);

    const actions = document.createElement("td");
    actions.className = "row-actions";
    const link = document.createElement("a");
    link.className = "button secondary";
    link.href = "/files/" + file.id + "/download?token=" + encodeURIComponent(token);
    link.setAttribute("download", "");
    link.textContent = "Download";
    const del = document.createElement("form");
    del.className = "delete-form";
    del.method = "post";
    del.action = "/files/" + file.id + "/delete?token=" + encodeURIComponent(token);
    del.dataset.filename = file.filename;
    const button = document.createElement("button");
    button.type = "submit";
    button.className = "danger";
    button.textContent = "Delete";
    del.append(button);
    confirmDeletes(del);
    actions.append(link, del);
    tr.append(actions);

    rows.prepend(tr);
    table.hidden = false;
    emptyNote.hidden = true;
  }

  function upload() {
    // Read the form before it is disabled: disabled fields are not sent.
    const data = new FormData(form);
    const started = performance.now();
    request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    progress.hidden = false;
    result.hidden = true;
    bar.value = 0;
    text.textContent = "0 %";
    setBusy(true);

    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) {
        return;
      }
      const percent = Math.floor((event.loaded / event.total) * 100);
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      bar.value = percent;
      text.textContent = percent + " % · " + humanSize(event.loaded / seconds) + "/s";
    });
    request.addEventListener("load", () => {
      setBusy(false);
      const body = request.response || {};
      if (request.status === 201) {
        bar.value = 100;
        text.textContent = "100 %";
        showResult(body.message, true);
        addRow(body);
        form.reset();
      } else if (request.status === 401) {
        // Expired or revoked: the sign-in page says so.
        window.location.assign("/login?expired=1");
      } else {
        showResult(body.message || "Upload failed (" + request.status + ")", false);
      }
      request = null;
    });
    request.addEventListener("error", () => {
      setBusy(false);
      showResult("Upload failed: the connection was lost", false);
      request = null;
    });
    request.addEventListener("abort", () => {
      setBusy(false);
      progress.hidden = true;
      showResult("Upload cancelled", false);
      request = null;
    });
    request.send(data);
  }

  form.addEventListener("submit", (event) => {
    if (!fileInput.files.length) {
      return; // the browser's own "required" message
    }
    event.preventDefault();
    upload();
  });

  cancelButton.addEventListener("click", () => {
    if (request) {
      request.abort();
    }
  });

  ["dragenter", "dragover"].forEach((name) => {
    dropZone.addEventListener(name, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach((name) => {
    dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"));
  });
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) {
      fileInput.files = event.dataTransfer.files;
    }
  });

  function confirmDeletes(deleteForm) {
    deleteForm.addEventListener("submit", (event) => {
      if (!window.confirm("Delete " + deleteForm.dataset.filename + "?")) {
        event.preventDefault();
        return;
      }
      // Confirmed here, so the server need not ask again on a page.
      const confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirm";
      confirmed.value = "yes";
      deleteForm.append(confirmed);
    });
  }
  document.querySelectorAll(".delete-form").forEach(confirmDeletes);
})();
