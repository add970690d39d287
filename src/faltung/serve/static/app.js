// The live page: draw, send the pixels, draw every layer's output. No libraries, no build.
"use strict";

const EXPLAIN = {
  Conv2D: "each channel is one filter slid over the layer before: a weighted sum of a small window, plus a bias",
  MaxPool2D: "the largest value of each window: smaller maps that keep the strongest responses",
  AvgPool2D: "the mean of each window",
  LpPool2D: "the article's pooling: ((1/H²) Σ z^P)^(1/P) over each window",
  GlobalAvgPool2D: "the mean of each channel",
  ReLU: "max(0, x): negative values become 0 (black)",
  LeakyReLU: "x for positive values, a small multiple of x for negative ones",
  Sigmoid: "1 / (1 + e^-x): squashes every value into (0, 1); near 0 or 1 it is saturated",
  Tanh: "squashes every value into (-1, 1)",
  Flatten: "the same numbers, laid out as one long vector",
  Dense: "every output is a weighted sum of all inputs, plus a bias",
  Dropout: "off at prediction time: passes its input through",
  Standardise: "the image as the network was trained to see it: (pixel − mean) / std for each channel",
  BatchNorm1D: "normalised with the statistics learned in training",
  BatchNorm2D: "each channel normalised with the statistics learned in training",
  Softmax: "turns scores into probabilities that sum to 1",
  Identity: "passes its input through",
};

const state = {
  info: null, c: 1, h: 28, w: 28, scale: 10, busy: false, dirty: false, updates: 0,
  pixels: null, layerViews: [], selected: null,
};

const $ = (id) => document.getElementById(id);

// -- colour maps -----------------------------------------------------------------------------
function ramp(stops) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(t), stops.length - 2);
    const f = t - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = stops[k][c] + f * (stops[k + 1][c] - stops[k][c]);
  }
  return lut;
}
const VIRIDIS = ramp([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]);
const DIVERGING = ramp([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]);

function paint(canvas, bytes, offset, h, w, lut) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = (bytes[offset + i] ?? 0) * 3;
    image.data[i * 4] = lut[v]; image.data[i * 4 + 1] = lut[v + 1];
    image.data[i * 4 + 2] = lut[v + 2];
    // Cells past the data (a vector's last row) stay transparent: they are no value.
    image.data[i * 4 + 3] = offset + i < bytes.length ? 255 : 0;
  }
  ctx.putImageData(image, 0, 0);
}

function paintSigned(canvas, values, h, w, bound) {
  const bytes = new Uint8Array(h * w);
  for (let i = 0; i < h * w; i++) bytes[i] = Math.round(127.5 + 127.5 * Math.max(-1, Math.min(1, values[i] / bound)));
  paint(canvas, bytes, 0, h, w, DIVERGING);
}

// -- talking to the server ---------------------------------------------------------------------
function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}
function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const result = await response.json();
  if (!response.ok) throw new Error(result.error || response.statusText);
  return result;
}

function status(message, isError) {
  $("status").textContent = message || "";
  $("status").classList.toggle("error", Boolean(isError));
}

// -- the drawing pad -----------------------------------------------------------------------------
function setupPad() {
  const pad = $("pad");
  pad.width = state.w * state.scale; pad.height = state.h * state.scale;
  pad.style.width = "150px";
  $("saliency").style.width = pad.style.width;
  clearPad();
  const ctx = pad.getContext("2d");
  let last = null;
  const at = (event) => {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
  };
  const stroke = (from, to) => {
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff";
    ctx.lineWidth = 2.2 * state.scale; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
  };
  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    last = at(event); stroke(last, last); $("sample-note").textContent = ""; requestUpdate();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const point = at(event); stroke(last, point); last = point; requestUpdate();
  });
  const end = () => { last = null; };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  pad.addEventListener("dragover", (event) => { event.preventDefault(); pad.classList.add("drop"); });
  pad.addEventListener("dragleave", () => pad.classList.remove("drop"));
  pad.addEventListener("drop", (event) => {
    event.preventDefault(); pad.classList.remove("drop");
    if (event.dataTransfer.files.length) openFile(event.dataTransfer.files[0]);
  });
}

function clearPad() {
  const ctx = $("pad").getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, $("pad").width, $("pad").height);
}

// The model's pixels: the mean of each scale x scale block, channel-major bytes.
function padPixels() {
  const { c, h, w, scale } = state;
  const data = $("pad").getContext("2d").getImageData(0, 0, w * scale, h * scale).data;
  const out = new Uint8Array(c * h * w);
  const area = scale * scale;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sums = [0, 0, 0];
      for (let dy = 0; dy < scale; dy++) {
        let p = ((y * scale + dy) * w * scale + x * scale) * 4;
        for (let dx = 0; dx < scale; dx++, p += 4) { sums[0] += data[p]; sums[1] += data[p + 1]; sums[2] += data[p + 2]; }
      }
      if (c === 1) out[y * w + x] = Math.round((sums[0] + sums[1] + sums[2]) / (3 * area));
      else for (let k = 0; k < c; k++) out[k * h * w + y * w + x] = Math.round(sums[Math.min(k, 2)] / area);
    }
  }
  return out;
}

function showPixels(bytes) {
  const { c, h, w } = state;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) image.data[i * 4 + k] = bytes[(c === 1 ? 0 : k) * h * w + i];
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const pad = $("pad").getContext("2d");
  pad.imageSmoothingEnabled = false;
  pad.drawImage(small, 0, 0, $("pad").width, $("pad").height);
}

async function openFile(file) {
  try {
    const bitmap = await createImageBitmap(file);
    clearPad();
    const pad = $("pad");
    const fit = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const dw = bitmap.width * fit, dh = bitmap.height * fit;
    const ctx = pad.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(bitmap, (pad.width - dw) / 2, (pad.height - dh) / 2, dw, dh);
    let note = `opened ${file.name}`;
    if (state.c === 1) {
      // Digits are light on dark in MNIST: invert dark-on-light pictures.
      const bytes = padPixels();
      const mean = bytes.reduce((a, b) => a + b, 0) / bytes.length;
      if (mean > 127) { showPixels(bytes.map((v) => 255 - v)); note += " (inverted: the model expects light on dark)"; }
    }
    $("sample-note").textContent = note;
    requestUpdate();
  } catch (error) {
    status(`could not read ${file.name}: ${error.message}`, true);
  }
}

async function sample(kind) {
  status(kind === "mistake" ? "looking for the model's mistakes…" : "");
  try {
    const result = await api(`/api/sample?kind=${kind}`);
    status("");
    showPixels(fromBase64(result.pixels));
    const label = state.info.classes[result.label];
    $("sample-note").textContent = `test image #${result.index}, labelled ${label}`;
    requestUpdate();
  } catch (error) { status(error.message, true); }
}

// -- updates --------------------------------------------------------------------------------------
function requestUpdate() {
  if (state.busy) { state.dirty = true; return; }
  sendUpdate();
}

async function sendUpdate() {
  state.busy = true; state.dirty = false;
  const pixels = padPixels();
  try {
    const result = await api("/api/update", { pixels: toBase64(pixels) });
    state.pixels = pixels;
    render(result);
    state.updates += 1;
    document.body.dataset.updates = String(state.updates);
    status("");
    if (state.selected) explainValue(state.selected);
  } catch (error) {
    status(error.message, true);
  } finally {
    state.busy = false;
    if (state.dirty) requestAnimationFrame(sendUpdate);
  }
}

function render(result) {
  const probs = $("probabilities");
  result.probabilities.forEach((p, k) => {
    const row = probs.children[k];
    row.dataset.p = p.toFixed(5);
    row.classList.toggle("top", k === result.top);
    row.querySelector(".bar div").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".value").textContent = p.toFixed(3);
  });
  $("saliency-class").textContent = state.info.classes[result.top];
  drawSaliency(fromBase64(result.saliency));
  result.layers.forEach((layer, index) => {
    const view = state.layerViews[index];
    const bytes = fromBase64(layer.data);
    view.range.textContent = `range ${layer.min.toPrecision(3)} … ${layer.max.toPrecision(3)}`;
    view.canvases.forEach((canvas, k) => paint(canvas, bytes, k * view.h * view.w, view.h, view.w, VIRIDIS));
  });
}

function drawSaliency(heat) {
  const { h, w } = state;
  const canvas = $("saliency");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const { c } = state;
  for (let i = 0; i < h * w; i++) {
    const a = heat[i] / 255;
    for (let k = 0; k < 3; k++) {
      const base = 0.45 * state.pixels[(c === 1 ? 0 : k) * h * w + i];
      const red = k === 0 ? 255 : k === 1 ? 40 : 20;
      image.data[i * 4 + k] = base * (1 - a) + red * a;
    }
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// -- the layer views ------------------------------------------------------------------------------
function buildLayers() {
  const container = $("layers");
  container.textContent = "";
  state.layerViews = state.info.layers.map((layer) => {
    const section = document.createElement("div");
    section.className = "layer";
    section.dataset.layer = layer.name;
    const title = document.createElement("h3");
    title.innerHTML = `<span class="name"></span> <span class="type"></span>`;
    title.querySelector(".name").textContent = layer.name;
    title.querySelector(".type").textContent = `${layer.type} · ${layer.shape.join(" × ")}`;
    const about = document.createElement("p");
    about.textContent = EXPLAIN[layer.type] || "";
    const range = document.createElement("span");
    about.append(about.textContent ? " · " : "", range);
    const maps = document.createElement("div");
    maps.className = "maps";
    let channels, h, w;
    if (layer.shape.length === 3) [channels, h, w] = layer.shape;
    else {
      // A vector: a few units as one row, more as a near-square image (the last row short).
      const units = layer.shape[0];
      channels = 1; w = units <= 32 ? units : Math.ceil(Math.sqrt(units)); h = Math.ceil(units / w);
    }
    const isConv = state.info.convolutions.includes(layer.name);
    if (isConv) maps.classList.add("conv");
    let zoom = Math.max(1, Math.round(Math.min(72, Math.max(36, 3 * Math.max(h, w))) / Math.max(h, w)));
    if (h === 1) zoom = Math.max(zoom, 20);  // one row of units: cells large enough to see
    const canvases = [];
    for (let k = 0; k < channels; k++) {
      const canvas = document.createElement("canvas");
      canvas.className = "fmap";
      canvas.dataset.layer = layer.name;
      canvas.dataset.channel = String(k);
      canvas.width = w; canvas.height = h;
      canvas.style.width = `${w * zoom}px`; canvas.style.height = `${h * zoom}px`;
      canvas.title = `${layer.name}, channel ${k}`;
      if (isConv) canvas.addEventListener("click", (event) => {
        const box = canvas.getBoundingClientRect();
        const col = Math.min(w - 1, Math.floor(((event.clientX - box.left) / box.width) * w));
        const row = Math.min(h - 1, Math.floor(((event.clientY - box.top) / box.height) * h));
        document.querySelectorAll("canvas.selected").forEach((c) => c.classList.remove("selected"));
        canvas.classList.add("selected");
        state.selected = { layer: layer.name, channel: k, row, col };
        explainValue(state.selected);
      });
      canvases.push(canvas);
      maps.append(canvas);
    }
    section.append(title, about, maps);
    container.append(section);
    return { canvases, h, w, range };
  });
}

function buildProbabilities() {
  const probs = $("probabilities");
  probs.textContent = "";
  state.info.classes.forEach((name) => {
    const row = document.createElement("div");
    row.className = "prob";
    row.innerHTML = `<span class="label"></span><span class="bar"><div></div></span><span class="value">-</span>`;
    row.querySelector(".label").textContent = name;
    probs.append(row);
  });
}

// -- one value of a convolution, as the article's sum ---------------------------------------------
async function explainValue(selected) {
  if (!state.pixels) return;
  try {
    const result = await api("/api/convolution", { pixels: toBase64(state.pixels), ...selected });
    showSum(result);
  } catch (error) { status(error.message, true); }
}

function flat(nested) { return nested.flat(Infinity); }

function numbers(caption, grid) {
  const table = document.createElement("table");
  table.className = "numbers";
  table.createCaption().textContent = caption;
  grid.forEach((row) => {
    const tr = table.insertRow();
    row.forEach((v) => { tr.insertCell().textContent = v.toFixed(2); });
  });
  return table;
}

function showSum(r) {
  $("detail").hidden = false;
  $("detail-title").textContent = `${r.layer}, channel ${r.channel}, position (${r.row}, ${r.col})`;
  const terms = r.partial_sums.map((s) => s.toFixed(3)).join(" + ");
  // The input index under kernel offset v: position·stride + dilation·v − padding.
  const index = (position, stride, dilation, start, v) => {
    const pad = position * stride - start;
    return `${position}·${stride} + ${dilation === 1 ? "" : dilation + "·"}${v}` + (pad ? ` − ${pad}` : "");
  };
  $("detail-formula").textContent =
    `x[${r.row},${r.col}] = Σc Σa Σb w[c,a,b] · y[c, ${index(r.row, r.stride[0], r.dilation[0], r.top, "a")}, ` +
    `${index(r.col, r.stride[1], r.dilation[1], r.left, "b")}] + bias\n= ` +
    (r.partial_sums.length > 6 ? `(${r.partial_sums.length} channel sums) ` : `${terms} `) +
    `+ ${r.bias.toFixed(3)} = ${r.value.toFixed(4)}`;
  const body = $("detail-body");
  body.textContent = "";
  const intro = document.createElement("p");
  intro.className = "hint";
  intro.textContent = `The window of "${r.input}" under the filter starts at row ${r.top}, column ${r.left}` +
    ` (negative: zero padding). Left: the filter's weights for each input channel (blue < 0 < red);` +
    ` middle: the window of the input; right: their products; then that channel's sum.`;
  body.append(intro);
  const grid = document.createElement("div");
  grid.className = "terms";
  const weights = flat(r.weight), patch = flat(r.patch);
  const bound = Math.max(1e-6, ...weights.map(Math.abs));
  const pbound = Math.max(1e-6, ...patch.map(Math.abs));
  const kh = r.weight[0].length, kw = r.weight[0][0].length;
  r.weight.forEach((w, i) => {
    const wc = document.createElement("canvas"), pc = document.createElement("canvas"), xc = document.createElement("canvas");
    paintSigned(wc, flat(w), kh, kw, bound);
    paintSigned(pc, flat(r.patch[i]), kh, kw, pbound);
    const products = flat(w).map((v, j) => v * flat(r.patch[i])[j]);
    paintSigned(xc, products, kh, kw, Math.max(1e-6, ...products.map(Math.abs)));
    const label = document.createElement("span");
    label.textContent = `c = ${r.input_channels[0] + i}`;
    const sum = document.createElement("span");
    sum.textContent = `Σ = ${r.partial_sums[i].toFixed(3)}`;
    grid.append(label, wc, pc, xc, sum);
  });
  body.append(grid);
  if (r.weight.length === 1) {
    body.append(numbers("weights w[a, b]", r.weight[0]), numbers("window y", r.patch[0]),
      numbers("products w · y", r.weight[0].map((row, a) => row.map((v, b) => v * r.patch[0][a][b]))));
  }
}

// -- start -------------------------------------------------------------------------------------------
async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) { status(`cannot reach the server: ${error.message}`, true); return; }
  [state.c, state.h, state.w] = state.info.shape;
  state.scale = Math.max(1, Math.floor(280 / Math.max(state.h, state.w)));
  $("model-title").textContent = `${state.info.title} · input ${state.info.shape.join(" × ")}`;
  if (!state.info.test_images) {
    $("random").disabled = true; $("mistake").disabled = true;
    $("data-note").textContent = `No test images: ${state.info.test_note}`;
  }
  buildProbabilities();
  buildLayers();
  setupPad();
  $("clear").addEventListener("click", () => { clearPad(); $("sample-note").textContent = ""; requestUpdate(); });
  $("random").addEventListener("click", () => sample("random"));
  $("mistake").addEventListener("click", () => sample("mistake"));
  $("file").addEventListener("change", (event) => { if (event.target.files.length) openFile(event.target.files[0]); });
  $("detail-close").addEventListener("click", () => {
    $("detail").hidden = true; state.selected = null;
    document.querySelectorAll("canvas.selected").forEach((c) => c.classList.remove("selected"));
  });
  requestUpdate();
}

start();
