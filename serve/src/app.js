// Progressive enhancement only: the pages work without it.
// A thumbnail that fails to load (a stale CDN link, or no network) is replaced by
// the same placeholder the server draws when it has no thumbnail: the title on a
// tinted square.
"use strict";
function placeholderFor(img) {
  const box = document.createElement("div");
  box.className = "placeholder";
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", img.alt);
  const label = document.createElement("span");
  label.textContent = img.alt; // text, never markup
  box.appendChild(label);
  img.replaceWith(box);
}
for (const img of document.querySelectorAll("img[data-fallback]")) {
  if (img.complete && img.naturalWidth === 0) {
    placeholderFor(img);
  } else {
    img.addEventListener("error", () => placeholderFor(img), { once: true });
  }
}
