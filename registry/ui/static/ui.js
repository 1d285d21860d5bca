// lorareg's pages work without this script; with it: a light/dark switch remembered by the browser,
// copy buttons on snippets, and pages that follow a running job refresh their part in place.
"use strict";
(function () {
  const root = document.documentElement;
  const saved = localStorage.getItem("lorareg-theme");
  if (saved) root.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    const toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", () => {
        const dark = root.dataset.theme
          ? root.dataset.theme === "dark"
          : matchMedia("(prefers-color-scheme: dark)").matches;
        root.dataset.theme = dark ? "light" : "dark";
        localStorage.setItem("lorareg-theme", root.dataset.theme);
      });
    }
    for (const block of document.querySelectorAll("pre[data-copy]")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy small";
      button.textContent = "Copy";
      button.addEventListener("click", async () => {
        await navigator.clipboard.writeText(block.innerText.trim());
        button.textContent = "Copied";
        setTimeout(() => (button.textContent = "Copy"), 1500);
      });
      block.before(button);
    }
    // <section id=… data-refresh="3">: fetch this page again every 3 s and put the fresh section in place;
    // once the answer no longer asks for that (the job finished), reload the whole page. Without
    // JavaScript, the page's <noscript><meta http-equiv="refresh"></noscript> reloads it instead.
    for (const section of document.querySelectorAll("[data-refresh][id]")) {
      const every = Number(section.dataset.refresh) * 1000;
      const tick = async () => {
        const answer = await fetch(location.href);
        if (!answer.ok) return;
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById(section.id);
        if (!fresh || !fresh.dataset.refresh) return location.reload();
        document.getElementById(section.id).replaceWith(fresh);
        setTimeout(tick, every);
      };
      setTimeout(tick, every);
    }
  });
})();
