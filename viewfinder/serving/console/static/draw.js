// Results drawn in the browser: the picture on a canvas (with boxes for PP-ShiTuV2), and the
// answer as DOM text beside it (bars for classification, tags for multi-label, a list of objects).

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#f032e6", "#9a6324", "#800000", "#000075"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const score = (value) => value.toFixed(3);

/** Load `src` (a data: URL or an http(s) URL) as an image; null when the browser cannot show it. */
export async function loadImage(src) {
  const image = new Image();
  image.src = src;
  try {
    await image.decode();
    return image;
  } catch {
    return null; // the service may still read it (or say why not): the answer is shown all the same
  }
}

/** The picture, and a box with "label score" for each detected object. */
export function drawPicture(canvas, image, objects = []) {
  canvas.hidden = !image;
  if (!image) return;
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300));
  const fontSize = Math.max(12, line * 7);
  ctx.font = `${fontSize}px sans-serif`;
  ctx.textBaseline = "top";
  const colours = new Map(); // one colour per label, in the order they appear: distinct on one drawing
  const colourOf = (label) => {
    if (!colours.has(label)) colours.set(label, PALETTE[colours.size % PALETTE.length]);
    return colours.get(label);
  };
  for (const object of objects) {
    const [x1, y1, x2, y2] = object.bbox;
    const best = object.recResults[0];
    const text = best ? `${best.label} ${score(best.score)}` : `? ${score(object.score)}`;
    const colour = best ? colourOf(best.label) : "#888888";
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const width = ctx.measureText(text).width + 2 * line;
    const top = y1 - fontSize - 2 * line >= 0 ? y1 - fontSize - 2 * line : y1; // above the box if it fits
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, width, fontSize + 2 * line);
    ctx.fillStyle = "#ffffff";
    ctx.fillText(text, x1 + line, top + line);
  }
}

/** Classification: one bar per category, best first. */
export function categoryBars(categories) {
  const list = el("ol", {class: "bars", id: "categories"});
  for (const category of categories) {
    const bar = el("span", {class: "bar"});
    bar.style.width = `${Math.round(category.score * 100)}%`;
    list.append(el("li", {"data-class-id": category.id},
      el("span", {class: "name"}, category.name), el("span", {class: "track"}, bar),
      el("span", {class: "score"}, score(category.score))));
  }
  return list;
}

/** Multi-label: the classes above the threshold as tags. */
export function tags(categories) {
  if (!categories.length) return el("p", {class: "muted", id: "tags"}, "No class scores above the threshold.");
  const list = el("ul", {class: "tags", id: "tags"});
  for (const category of categories) {
    list.append(el("li", {}, el("span", {class: "name"}, category.name), " ", el("span", {class: "score"}, score(category.score))));
  }
  return list;
}

/** PP-ShiTuV2: the detected objects and what each was recognised as. */
export function objectList(objects) {
  if (!objects.length) return el("p", {class: "muted", id: "objects"}, "No object detected.");
  const list = el("ol", {class: "objects", id: "objects"});
  for (const object of objects) {
    const best = object.recResults[0];
    const box = object.bbox.map((v) => Math.round(v)).join(", ");
    const matches = object.recResults.map((r) => `${r.label} ${score(r.score)}`).join(" · ");
    list.append(el("li", {},
      el("span", {class: "name"}, best ? best.label : "not recognised"),
      el("span", {class: "muted"}, ` box [${box}], detection ${score(object.score)}`),
      matches ? el("div", {class: "matches"}, matches) : ""));
  }
  return list;
}

export {el};
