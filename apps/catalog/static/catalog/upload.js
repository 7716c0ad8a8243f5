// Sends the files chosen in an upload form to the artifact API one at a time, with a progress
// bar each, then submits the form with "<filename>:<sha256>" for each instead of the files.
// Without this script the form posts the files itself, so it stays usable.
"use strict";

(function () {
  function csrfToken(form) {
    const cookie = document.cookie
      .split(";")
      .map((part) => part.trim())
      .find((part) => part.startsWith("csrftoken="));
    if (cookie) {
      return decodeURIComponent(cookie.slice("csrftoken=".length));
    }
    const field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function errorMessage(request) {
    try {
      const body = JSON.parse(request.responseText);
      if (body && body.error && body.error.message) {
        return body.error.message;
      }
    } catch (notJson) {
      // A proxy's HTML error page, for instance: fall through to the status.
    }
    if (!request.status) {
      return "The upload failed: the connection to the server was lost.";
    }
    return `The upload failed (HTTP ${request.status}).`;
  }

  function progressRow(list, file) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", `Upload of ${file.name}`);
    const percent = document.createElement("span");
    percent.className = "upload-percent";
    percent.setAttribute("aria-live", "polite");
    percent.textContent = "0%";
    const problem = document.createElement("span");
    problem.className = "errorlist";
    problem.setAttribute("role", "alert");
    row.append(name, " ", bar, " ", percent, " ", problem);
    list.append(row);
    return {
      show(value) {
        bar.value = value;
        percent.textContent = `${value}%`;
      },
      fail(message) {
        row.classList.add("failed");
        problem.textContent = message;
      },
    };
  }

  function upload(url, token, file, row) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", url);
      request.setRequestHeader("X-CSRFToken", token);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          // The request body holds more than the file: 100 waits for the server's answer.
          row.show(Math.min(99, Math.floor((event.loaded / event.total) * 100)));
        }
      });
      request.addEventListener("load", () => {
        if (request.status === 200 || request.status === 201) {
          row.show(100);
          resolve(JSON.parse(request.responseText).sha256);
        } else {
          row.fail(errorMessage(request));
          reject(new Error("upload refused"));
        }
      });
      request.addEventListener("error", () => {
        row.fail(errorMessage(request));
        reject(new Error("upload failed"));
      });
      const body = new FormData();
      body.append("file", file, file.name);
      request.send(body);
    });
  }

  function hiddenInput(name, value) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    return input;
  }

  async function uploadThenSubmit(form, input, list) {
    const buttons = form.querySelectorAll("button[type=submit], input[type=submit]");
    buttons.forEach((button) => { button.disabled = true; });
    list.replaceChildren();
    list.hidden = false;
    const url = form.dataset.artifactUpload;
    const token = csrfToken(form);
    const uploaded = [];
    try {
      for (const file of Array.from(input.files)) {
        const sha256 = await upload(url, token, file, progressRow(list, file));
        uploaded.push(hiddenInput("uploaded", `${file.name}:${sha256}`));
      }
    } catch (refused) {
      buttons.forEach((button) => { button.disabled = false; });
      return;
    }
    // The files are on the node already: the form carries their digests, not their bytes.
    input.value = "";
    form.append(...uploaded);
    form.submit();
  }

  document.querySelectorAll("form[data-artifact-upload]").forEach((form) => {
    const input = form.querySelector("input[type=file][data-artifact-input]");
    const list = form.querySelector("[data-upload-progress]");
    if (!input || !list || !window.FormData) {
      return;
    }
    form.addEventListener("submit", (event) => {
      if (input.files.length === 0) {
        return;
      }
      event.preventDefault();
      uploadThenSubmit(form, input, list);
    });
  });
})();
