// "Copy" buttons for read-only text fields (BibTeX). Without this script the buttons stay
// hidden and the text can still be selected and copied by hand.
"use strict";

(function () {
  if (!navigator.clipboard) {
    return;
  }
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    const field = document.getElementById(button.dataset.copy);
    const status = document.querySelector(`[data-copy-status="${button.dataset.copy}"]`);
    if (!field) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        status.textContent = "Copied.";
      } catch (refused) {
        field.select();
        status.textContent = "Copying was refused: the text is selected, press Ctrl+C.";
      }
    });
  });
})();
