// Lockbox: progressive enhancement of the upload page. Everything here also
// works without JavaScript: the form posts, the delete buttons ask on a page.
//
// With JavaScript, every file goes up as a resumable upload (tus, through
// tus-js-client in static/vendor/): several files at once, progress and speed,
// pause and resume, retries with backoff when the connection drops, and after
// a page reload the same file chosen again goes on from where it stopped.
"use strict";

(function () {
  // The owner's upload form, or a guest's on an upload request's page.
  const form =
    document.getElementById("upload-form") ||
    document.getElementById("request-upload-form");
  if (!form) {
    return;
  }
  const guest = form.id === "request-upload-form";
  const fileInput = document.getElementById("inputFile");
  const dropZone = document.getElementById("upload-card");
  const description = document.getElementById("description");
  const lifetime = document.getElementById("expires-in");
  const uploadButton = document.getElementById("upload-button");
  const pauseButton = document.getElementById("pause-button");
  const cancelButton = document.getElementById("cancel-button");
  const progress = document.getElementById("upload-progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const list = document.getElementById("upload-list");
  const resumeNote = document.getElementById("resume-note");
  const result = document.getElementById("upload-result");
  const rows = document.getElementById("file-rows");
  const table = document.getElementById("file-table");
  const emptyNote = document.getElementById("empty-note");
  const token = guest ? null : new URL(form.action).searchParams.get("token");
  // Whose page this is: the addresses of unfinished uploads this browser keeps
  // are the signed-in account's alone, or this upload request's (see
  // AccountUrlStorage).
  const account = guest ? "request-" + form.dataset.request : form.dataset.account;
  // Where uploads are created: the account's tus endpoint, or the request's.
  const endpoint = guest ? form.dataset.endpoint : "/uploads";
  // A piece per PATCH: big enough to be fast, small enough that a retry
  // repeats little.
  const CHUNK_SIZE = 8 * 1024 * 1024;
  const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000];
  let batch = null;

  document.querySelectorAll(".js-only").forEach((el) => { el.hidden = false; });

  // The whole upload card takes dropped files, and shows it while files are
  // dragged over it; a drop starts their upload at once.
  let dragDepth = 0;
  const carriesFiles = (event) =>
    !event.dataTransfer || Array.from(event.dataTransfer.types || []).includes("Files");
  dropZone.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) {
      return;
    }
    event.preventDefault();
    dragDepth += 1;
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragover", (event) => {
    if (carriesFiles(event)) {
      event.preventDefault();
    }
  });
  dropZone.addEventListener("dragleave", () => {
    dragDepth = Math.max(dragDepth - 1, 0);
    if (dragDepth === 0) {
      dropZone.classList.remove("dragging");
    }
  });
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    dropZone.classList.remove("dragging");
    if (!event.dataTransfer.files.length || uploadButton.disabled) {
      return;
    }
    fileInput.files = event.dataTransfer.files;
    if (form.requestSubmit) {
      form.requestSubmit(uploadButton);
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

  if (!window.tus || !window.tus.isSupported) {
    return; // the plain form upload stays
  }
  fileInput.multiple = true;

  // Where tus-js-client keeps the address of each unfinished upload, to resume
  // it after a reload: the browser's localStorage, under keys of this account
  // alone (tus-js-client's urlStorage interface). Another account signed in on
  // the same browser is never offered them, and signing out removes them all
  // (session.js).
  function AccountUrlStorage(owner) {
    this.prefix = "lockbox.uploads::" + owner + "::";
  }
  AccountUrlStorage.prototype._entries = function (prefix) {
    const found = [];
    for (let index = 0; index < localStorage.length; index += 1) {
      const key = localStorage.key(index);
      if (key && key.startsWith(prefix)) {
        try {
          const entry = JSON.parse(localStorage.getItem(key));
          entry.urlStorageKey = key;
          found.push(entry);
        } catch (error) {
          localStorage.removeItem(key); // not ours to read: dropped
        }
      }
    }
    return Promise.resolve(found);
  };
  AccountUrlStorage.prototype.findAllUploads = function () {
    return this._entries(this.prefix);
  };
  AccountUrlStorage.prototype.findUploadsByFingerprint = function (fingerprint) {
    return this._entries(this.prefix + fingerprint + "::");
  };
  AccountUrlStorage.prototype.removeUpload = function (urlStorageKey) {
    localStorage.removeItem(urlStorageKey);
    return Promise.resolve();
  };
  AccountUrlStorage.prototype.addUpload = function (fingerprint, upload) {
    const key =
      this.prefix + fingerprint + "::" + Math.round(Math.random() * 1e12);
    localStorage.setItem(key, JSON.stringify(upload));
    return Promise.resolve(key);
  };
  const urlStorage = window.tus.canStoreURLs ? new AccountUrlStorage(account) : null;

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

  // How long is left at the current speed, as people say it.
  function timeLeft(bytesLeft, bytesPerSecond) {
    if (!(bytesPerSecond > 0) || bytesLeft <= 0) {
      return "";
    }
    const seconds = Math.ceil(bytesLeft / bytesPerSecond);
    if (seconds < 60) {
      return " · " + seconds + " s left";
    }
    if (seconds < 3600) {
      return " · " + Math.ceil(seconds / 60) + " min left";
    }
    const hours = Math.floor(seconds / 3600);
    return " · " + hours + " h " + Math.ceil((seconds % 3600) / 60) + " min left";
  }

  function showResult(message, ok) {
    result.textContent = message;
    result.className = "flash " + (ok ? "flash-success" : "flash-error");
    result.hidden = false;
  }

  function setBusy(busy) {
    uploadButton.disabled = busy;
    pauseButton.hidden = !busy;
    pauseButton.textContent = "Pause";
    cancelButton.hidden = !busy;
    fileInput.disabled = busy;
  }

  function withToken(path) {
    return path + "?token=" + encodeURIComponent(token);
  }

  // A cell, labelled with its column's header for the phone layout.
  function cell(content, className, label) {
    const td = document.createElement("td");
    td.textContent = content;
    if (className) {
      td.className = className;
    }
    if (label) {
      td.dataset.label = label;
    }
    return td;
  }

  // A button's text, with the file it acts on for screen readers.
  function named(element, text, filename) {
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " " + filename;
    element.append(text, hidden);
  }

  // A new row for a file the server just stored; text only, never HTML.
  function addRow(file) {
    const tr = document.createElement("tr");
    tr.dataset.fileId = file.id;
    const name = cell("", "name", "Name");
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "pick";
    pick.name = "file_ids";
    pick.value = file.id;
    pick.setAttribute("form", "pick-files");
    pick.setAttribute("aria-label", "Pick " + file.filename);
    const open = document.createElement("a");
    open.href = withToken("/files/" + file.id + "/preview");
    open.textContent = file.filename;
    name.append(pick, " ", open);
    tr.append(
      name,
      cell(file.description, "description", "Description"),
      cell(humanSize(file.size), "num", "Size"),
    );
    const when = document.createElement("td");
    when.dataset.label = "Uploaded";
    const time = document.createElement("time");
    time.dateTime = file.created_at;
    time.textContent = file.created_at.slice(0, 16).replace("T", " ") + " UTC";
    when.append(time);
    tr.append(when);

    const actions = document.createElement("td");
    actions.className = "row-actions";
    const link = document.createElement("a");
    link.className = "button secondary";
    link.href = withToken("/files/" + file.id + "/download");
    link.setAttribute("download", "");
    named(link, "Download", file.filename);
    const share = document.createElement("a");
    share.className = "button secondary share-link";
    share.href = withToken("/files/" + file.id + "/shares");
    named(share, "Share", file.filename);
    const del = document.createElement("form");
    del.className = "delete-form";
    del.method = "post";
    del.action = withToken("/files/" + file.id + "/delete");
    del.dataset.filename = file.filename;
    const button = document.createElement("button");
    button.type = "submit";
    button.className = "danger";
    named(button, "Delete", file.filename);
    del.append(button);
    confirmDeletes(del);
    actions.append(link, share, del);
    tr.append(actions);

    rows.prepend(tr);
    table.hidden = false;
    emptyNote.hidden = true;
    const picking = document.getElementById("pick-files");
    if (picking) picking.hidden = false;
  }

  // What the server said about a failed request, for people.
  function reasonOf(error) {
    const response = error.originalResponse;
    if (!response) {
      return "the connection was lost";
    }
    try {
      const body = JSON.parse(response.getBody());
      if (body && body.message) {
        return body.message;
      }
    } catch (ignored) {
      // not JSON: say the status
    }
    return "the server answered " + response.getStatus();
  }

  // The account's usage line, brought up to date after an upload.
  function refreshUsage() {
    if (guest) {
      return; // a guest has no account here
    }
    fetch(withToken("/account"), { headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((account) => {
        if (!account) {
          return;
        }
        const meter = document.getElementById("usage-meter");
        const usageText = document.getElementById("usage-text");
        if (meter) {
          meter.value = account.used_bytes;
        }
        usageText.textContent = account.quota_bytes
          ? humanSize(account.used_bytes) + " of " + humanSize(account.quota_bytes) + " used"
          : humanSize(account.used_bytes) + " used";
      })
      .catch(() => {});
  }

  // Uploads a reload interrupted: choosing the same file again resumes it.
  // Said at the page's start, and brought up to date as uploads finish.
  function showInterrupted() {
    if (!urlStorage) {
      return;
    }
    urlStorage
      .findAllUploads()
      .then((unfinished) => {
        const running = batch ? batch.uploads.filter((each) => !each.done).length : 0;
        const waiting = unfinished.length - running;
        resumeNote.hidden = waiting <= 0;
        resumeNote.textContent =
          waiting === 1
            ? "1 upload was interrupted: choose the same file again to resume it."
            : waiting +
              " uploads were interrupted: choose the same files again to resume them.";
      })
      .catch(() => {});
  }

  // One file's line in the list, and its upload.
  function FileUpload(file, note, onDone) {
    this.file = file;
    this.sent = 0;
    this.done = false;
    this.item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    this.bar = document.createElement("progress");
    this.bar.max = 100;
    this.bar.value = 0;
    this.state = document.createElement("span");
    this.state.className = "state";
    this.state.textContent = "waiting";
    this.item.append(name, this.bar, this.state);
    list.append(this.item);

    const self = this;
    // Speed counts the bytes sent since this page started sending (an upload
    // resumed from the server's offset did not send the rest just now).
    let started = null;
    let startOffset = 0;
    this.upload = new window.tus.Upload(file, {
      endpoint: endpoint,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      metadata: Object.assign(
        { filename: file.name, filetype: file.type, description: note },
        // "Keep for", when chosen (else the account's default applies).
        lifetime && lifetime.value ? { expires_in: lifetime.value } : {},
      ),
      urlStorage: urlStorage || undefined,
      storeFingerprintForResuming: urlStorage !== null,
      removeFingerprintOnSuccess: true,
      // The account token creates the upload; its URL then carries a key of
      // its own, so an upload outlives the token.
      onBeforeRequest(request) {
        if (request.getMethod() === "POST" && token) {
          request.setHeader("Authorization", "Bearer " + token);
        }
      },
      onProgress(sent, total) {
        if (started === null) {
          started = performance.now();
          startOffset = sent;
        }
        self.sent = sent;
        self.item.classList.remove("waiting");
        const seconds = Math.max((performance.now() - started) / 1000, 0.001);
        const rate = (sent - startOffset) / seconds;
        const percent = total ? Math.floor((sent / total) * 100) : 100;
        self.bar.value = percent;
        self.state.textContent =
          percent + " % · " + humanSize(rate) + "/s" + timeLeft(total - sent, rate);
        batch.showTotal();
      },
      // A dropped connection is tried again (RETRY_DELAYS), saying so; what
      // the server refused is not.
      onShouldRetry(error, attempt, options) {
        const response = error.originalResponse;
        const status = response ? response.getStatus() : 0;
        if (status >= 400 && status < 500 && status !== 409 && status !== 423) {
          return false;
        }
        if (!navigator.onLine) {
          return false; // onError waits for the network
        }
        self.item.classList.add("waiting");
        self.state.textContent =
          "reconnecting… (try " + (attempt + 1) + " of " + options.retryDelays.length + ")";
        return true;
      },
      onSuccess(payload) {
        self.done = true;
        self.item.classList.remove("waiting");
        showInterrupted();
        self.bar.value = 100;
        self.state.textContent = "done";
        if (guest) {
          onDone(null); // a guest sees only what they sent, listed above
          return;
        }
        const id = payload.lastResponse.getHeader("Lockbox-File-Id");
        fetch(withToken("/files/" + id), { headers: { Accept: "application/json" } })
          .then((response) => response.json())
          .then((stored) => {
            addRow(stored);
            onDone(null);
          })
          .catch(() => onDone(null));
      },
      onError(error) {
        const response = error.originalResponse;
        if (!response && !navigator.onLine) {
          self.waitForNetwork();
          return;
        }
        self.done = true;
        self.item.classList.remove("waiting");
        self.item.classList.add("failed");
        if (response && response.getStatus() === 401 && !guest) {
          // The page's token has expired: renew it (the renewal cookie) and
          // come back to this page, or sign in and come back to it.
          const here = new URL(window.location.href);
          here.searchParams.delete("token");
          const renewal = new URL("/renew", window.location.href);
          renewal.searchParams.set("token", token);
          renewal.searchParams.set("next", here.pathname + here.search);
          window.location.assign(renewal.pathname + renewal.search);
          return;
        }
        // The reason is said once, in the result below the list.
        self.state.textContent = "failed";
        onDone(reasonOf(error));
      },
    });
  }

  // Offline: the upload waits, and goes on from the server's offset once
  // the browser is back online (however long that takes).
  FileUpload.prototype.waitForNetwork = function () {
    const self = this;
    this.item.classList.add("waiting");
    this.state.textContent = "offline · waiting for the network…";
    window.addEventListener(
      "online",
      () => {
        if (self.done || (batch && batch.paused)) {
          return;
        }
        self.state.textContent = "reconnecting…";
        self.upload.start();
      },
      { once: true },
    );
  };

  FileUpload.prototype.start = function () {
    const upload = this.upload;
    if (!urlStorage) {
      upload.start();
      return;
    }
    // The same file chosen again after a reload goes on where it stopped.
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
      }
      upload.start();
    });
  };

  // The files of one press of Upload, and the buttons that act on all of them.
  function Batch(files, note) {
    this.uploads = [];
    this.failures = [];
    this.paused = false;
    this.total = 0;
    let left = files.length;
    const self = this;
    list.replaceChildren();
    list.hidden = false;
    for (const file of files) {
      this.total += file.size;
      this.uploads.push(
        new FileUpload(file, note, (failure) => {
          if (failure) {
            self.failures.push(file.name + ": " + failure);
          }
          left -= 1;
          if (left === 0) {
            self.finish();
          }
        }),
      );
    }
  }

  Batch.prototype.showTotal = function () {
    const sent = this.uploads.reduce((sum, each) => sum + each.sent, 0);
    const percent = Math.min(this.total ? Math.floor((sent / this.total) * 100) : 100, 99);
    if (this.startSent === null) {
      this.startSent = sent;
      this.started = performance.now();
    }
    const seconds = Math.max((performance.now() - this.started) / 1000, 0.001);
    const rate = (sent - this.startSent) / seconds;
    bar.value = percent;
    text.textContent =
      percent + " % · " + humanSize(rate) + "/s" + timeLeft(this.total - sent, rate);
  };

  Batch.prototype.start = function () {
    this.started = performance.now();
    this.startSent = null;
    progress.hidden = false;
    result.hidden = true;
    bar.value = 0;
    text.textContent = "0 %";
    setBusy(true);
    this.uploads.forEach((each) => each.start());
    showInterrupted();
  };

  Batch.prototype.togglePause = function () {
    this.paused = !this.paused;
    pauseButton.textContent = this.paused ? "Resume" : "Pause";
    for (const each of this.uploads) {
      if (each.done) {
        continue;
      }
      if (this.paused) {
        each.upload.abort();
        each.state.textContent = "paused";
      } else {
        each.upload.start();
      }
    }
  };

  // Cancel terminates the uploads: the server removes what they stored.
  Batch.prototype.cancel = function () {
    for (const each of this.uploads) {
      if (!each.done) {
        each.done = true;
        each.upload.abort(true).catch(() => {});
        each.state.textContent = "cancelled";
      }
    }
    batch = null;
    setBusy(false);
    progress.hidden = true;
    showResult("Upload cancelled", false);
  };

  Batch.prototype.finish = function () {
    if (batch !== this) {
      return;
    }
    batch = null;
    setBusy(false);
    refreshUsage();
    showInterrupted();
    if (this.failures.length) {
      showResult("Upload failed: " + this.failures.join("; "), false);
      return;
    }
    bar.value = 100;
    text.textContent = "100 %";
    const names = this.uploads.map((each) => each.file.name);
    showResult(
      names.length === 1
        ? "file " + names[0] + " uploaded successfully"
        : names.length + " files uploaded successfully",
      true,
    );
    form.reset();
  };

  form.addEventListener("submit", (event) => {
    if (!fileInput.files.length) {
      return; // the browser's own "required" message
    }
    event.preventDefault();
    batch = new Batch(Array.from(fileInput.files), description ? description.value : "");
    batch.start();
  });

  pauseButton.addEventListener("click", () => {
    if (batch) {
      batch.togglePause();
    }
  });

  cancelButton.addEventListener("click", () => {
    if (batch) {
      batch.cancel();
    }
  });

  showInterrupted();

})();
