// The page of scnn-inpaint --serve: open a photo, paint the hole on a canvas
// the size of the photo, post the photo file and a PNG mask (white = hole)
// to api/inpaint, show the two composites it returns. Plain DOM and canvas,
// no library, nothing loaded from the network.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const photo = $("photo"), mask = $("mask");
  const pctx = photo.getContext("2d");
  const mctx = mask.getContext("2d", {willReadFrequently: true});
  const brush = $("brush");
  const STROKE = "#ff0050";
  const MIN_SHOWN = 384;        // small photos are shown enlarged to paint
  let file = null, stem = "photo", limits = null;
  let undo = [], maxUndo = 30, drawing = false, last = null, fills = 0;
  let busy = false;
  const urls = {};

  const setStatus = (text) => { $("status").textContent = text; };
  function showError(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }
  function refresh() {
    $("undo").disabled = busy || !undo.length;
    $("clear").disabled = busy || !file;
    $("fill").disabled = busy || !file;
    $("file").disabled = busy;
  }
  function megapixels(n) { return (n / 1e6).toFixed(1) + " MP"; }

  fetch("api/info").then((r) => r.json()).then((info) => {
    limits = info;
    $("model-info").textContent =
      `model: ${info.model} (scnn_jax ${info.version}), ` +
      `${info.channels === 1 ? "grayscale" : "RGB"}`;
    $("model-caption").textContent = `Spiking network (${info.model})`;
  }).catch(() => {
    $("model-info").textContent = "the server does not answer";
  });

  // ---- opening a photo -------------------------------------------------
  $("file").addEventListener("change", async () => {
    const f = $("file").files[0];
    if (!f) return;
    showError("");
    if (limits && f.size > limits.max_upload_bytes) {
      showError(`${f.name} is ${(f.size / 2 ** 20).toFixed(1)} MB, over the ` +
                `${(limits.max_upload_bytes / 2 ** 20).toFixed(0)} MB limit ` +
                "of this server (--max-upload-mb)");
      return;
    }
    const img = new Image();
    const url = URL.createObjectURL(f);
    try {
      img.src = url;
      await img.decode();   // turned by its EXIF orientation, as shown
    } catch (e) {
      showError(`cannot show ${f.name}: not an image this browser decodes ` +
                "(use PNG, JPEG or WebP)");
      return;
    } finally {
      URL.revokeObjectURL(url);
    }
    const w = img.naturalWidth, h = img.naturalHeight;
    if (limits && w * h > limits.max_pixels) {
      showError(`${f.name} is ${w}x${h} px (${megapixels(w * h)}), over the ` +
                `${megapixels(limits.max_pixels)} limit of this server ` +
                "(--max-megapixels)");
      return;
    }
    file = f;
    stem = f.name.replace(/\.[^.]*$/, "") || "photo";
    photo.width = mask.width = w;
    photo.height = mask.height = h;
    pctx.drawImage(img, 0, 0);
    mctx.clearRect(0, 0, w, h);
    // Small photos are shown enlarged (pixels kept sharp), results alike.
    for (const el of [photo, $("result-model"), $("result-biharmonic")]) {
      el.style.width = w < MIN_SHOWN ? `${MIN_SHOWN}px` : "";
      el.classList.toggle("pixelated", w < MIN_SHOWN);
    }
    // Each undo step keeps a copy of the mask: bound their memory.
    maxUndo = Math.max(3, Math.min(30, Math.floor(4e8 / (w * h * 4))));
    undo = [];
    brush.max = String(Math.max(16, Math.round(Math.max(w, h) / 4)));
    setBrush(Math.max(2, Math.round(Math.min(w, h) / 16)));
    $("paint").hidden = false;
    $("results").hidden = true;
    $("download-mask").hidden = true;
    setStatus(`${f.name}: ${w}x${h} px. Paint the hole.`);
    photo.dataset.loaded = String(Date.now());
    refresh();
  });

  // ---- painting ----------------------------------------------------------
  function setBrush(px) {
    brush.value = String(px);
    $("brush-value").textContent = `${brush.value} px`;
  }
  brush.addEventListener("input", () => setBrush(brush.value));

  function at(ev) {   // the event's position in photo pixels
    const r = mask.getBoundingClientRect();
    return {x: (ev.clientX - r.left) * mask.width / r.width,
            y: (ev.clientY - r.top) * mask.height / r.height};
  }
  function paint(a, b) {
    const size = Number(brush.value);
    mctx.fillStyle = mctx.strokeStyle = STROKE;
    mctx.lineWidth = size;
    mctx.lineCap = mctx.lineJoin = "round";
    mctx.beginPath();
    if (a.x === b.x && a.y === b.y) {
      mctx.arc(a.x, a.y, size / 2, 0, 2 * Math.PI);
      mctx.fill();
    } else {
      mctx.moveTo(a.x, a.y);
      mctx.lineTo(b.x, b.y);
      mctx.stroke();
    }
  }
  function remember() {
    undo.push(mctx.getImageData(0, 0, mask.width, mask.height));
    if (undo.length > maxUndo) undo.shift();
  }
  mask.addEventListener("pointerdown", (ev) => {
    if (!file || busy || ev.button !== 0) return;
    ev.preventDefault();
    remember();
    drawing = true;
    mask.setPointerCapture(ev.pointerId);
    last = at(ev);
    paint(last, last);
    refresh();
  });
  mask.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = at(ev);
    paint(last, p);
    last = p;
  });
  const stop = () => { drawing = false; };
  mask.addEventListener("pointerup", stop);
  mask.addEventListener("pointercancel", stop);

  function undoStep() {
    if (!undo.length || busy) return;
    mctx.putImageData(undo.pop(), 0, 0);
    refresh();
  }
  $("undo").addEventListener("click", undoStep);
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") {
      ev.preventDefault();
      undoStep();
    }
  });
  $("clear").addEventListener("click", () => {
    remember();
    mctx.clearRect(0, 0, mask.width, mask.height);
    refresh();
  });

  // ---- filling -----------------------------------------------------------
  // The painted strokes as a black / white PNG of the photo's size: a pixel
  // painted at least half opaque is a hole, as the server reads masks.
  function maskPng() {
    const w = mask.width, h = mask.height;
    const src = mctx.getImageData(0, 0, w, h).data;
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const ctx = c.getContext("2d");
    const out = ctx.createImageData(w, h);
    const d = out.data;
    let holes = 0;
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] >= 128 ? 255 : 0;
      holes += v ? 1 : 0;
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    return new Promise((resolve) =>
      c.toBlob((blob) => resolve({blob, holes}), "image/png"));
  }

  function link(id, blob, name) {
    if (urls[id]) URL.revokeObjectURL(urls[id]);
    urls[id] = URL.createObjectURL(blob);
    const a = $(id);
    a.href = urls[id];
    a.download = name;
    a.hidden = false;
    return urls[id];
  }
  async function show(which, b64, name) {
    const blob = await (await fetch(`data:image/png;base64,${b64}`)).blob();
    $(`result-${which}`).src = link(`download-${which}`, blob, name);
  }

  async function errorOf(resp) {
    const text = await resp.text();
    try { return JSON.parse(text).error || `HTTP ${resp.status}`; }
    catch (e) { return `HTTP ${resp.status}: ${text.split("\n")[0]}`; }
  }

  $("fill").addEventListener("click", async () => {
    if (!file || busy) return;
    showError("");
    const {blob, holes} = await maskPng();
    if (!holes) {
      showError("paint over the part of the photo to fill first");
      return;
    }
    link("download-mask", blob, `${stem}_mask.png`);
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("mask", blob, `${stem}_mask.png`);
    busy = true;
    refresh();
    const t0 = performance.now();
    setStatus("filling... (the first fill of a photo size compiles the model)");
    try {
      let resp;
      try {
        resp = await fetch("api/inpaint", {method: "POST", body: form});
      } catch (e) {
        throw new Error("the server does not answer: is scnn-inpaint " +
                        "--serve still running?");
      }
      if (!resp.ok) throw new Error(await errorOf(resp));
      const body = await resp.json();
      await show("model", body.fill, `${stem}_filled.png`);
      await show("biharmonic", body.biharmonic, `${stem}_biharmonic.png`);
      $("results").hidden = false;
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      const notes = body.notes.length ? ` Note: ${body.notes.join("; ")}.` : "";
      setStatus(`filled ${(100 * body.hole_fraction).toFixed(1)} % of ` +
                `${body.width}x${body.height} px in ${s} s (model ` +
                `${body.seconds.model} s, biharmonic ` +
                `${body.seconds.biharmonic} s).${notes}`);
      document.body.dataset.fills = String(++fills);
    } catch (e) {
      showError(e.message);
      setStatus("");
    } finally {
      busy = false;
      refresh();
    }
  });
})();
