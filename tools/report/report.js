// Draws the comparison report from the JSON element the page carries (tools/report/page.py).
"use strict";
(function () {
  const R = JSON.parse(document.getElementById("report-data").textContent);
  const NAMES = Object.keys(R.trackers);
  const HIGHER_BETTER = { HOTA: true, DetA: true, AssA: true, MOTA: true, IDF1: true };
  const PERCENT = { HOTA: 1, DetA: 1, AssA: 1, MOTA: 1, IDF1: 1 };
  const SVG = "http://www.w3.org/2000/svg";
  const LABEL_W = 110, AXIS_W = 960, ROW_H = 14, ROW_GAP = 5, TOP = 10;
  const EAGER_IDENTITIES = 400;  // above this many in all, a sequence's timelines are drawn when opened
  const MANY_IDENTITIES = 30;    // above this many in a sequence, only those with events are shown at first

  // One colour per tracker id: the golden-ratio hue steps of tools/visualize.py's id_color.
  function idColor(id) {
    const hue = ((id * 0.618033988749895) % 1) * 360;
    return "hsl(" + hue.toFixed(1) + ",100%,57.5%)";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children || []) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return node;
  }

  function svgEl(tag, attrs, title) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (title) {
      const t = document.createElementNS(SVG, "title");
      t.textContent = title;
      node.appendChild(t);
    }
    return node;
  }

  function fmt(key, value) {
    return PERCENT[key] ? value.toFixed(2) : String(value);
  }

  function anchor(seq, gt) {
    return "tl-" + seq + "-" + gt;
  }

  // Cells of one metric across trackers, the best one marked.
  function metricCells(rows, key) {
    const values = NAMES.map((n) => rows[n][key]);
    const best = HIGHER_BETTER[key] ? Math.max(...values) : Math.min(...values);
    return NAMES.map((n, i) => el("td", {
      class: "num" + (NAMES.length > 1 && values[i] === best ? " best" : ""),
      text: fmt(key, values[i]),
    }));
  }

  function totalTable() {
    const head = el("tr", {}, [el("th", { text: "tracker" }), ...R.metrics.map((k) => el("th", { text: k }))]);
    const body = NAMES.map((n) => {
      const row = R.tables.combined[n];
      const cells = R.metrics.map((k) => {
        const values = NAMES.map((m) => R.tables.combined[m][k]);
        const best = HIGHER_BETTER[k] ? Math.max(...values) : Math.min(...values);
        return el("td", { class: "num" + (NAMES.length > 1 && row[k] === best ? " best" : ""), text: fmt(k, row[k]) });
      });
      return el("tr", {}, [el("th", { class: "tracker", text: n }), ...cells]);
    });
    return el("table", { id: "total-table", class: "metrics" }, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function sequenceTable() {
    const top = el("tr", {}, [el("th", { rowspan: "2", text: "sequence" }),
      ...R.metrics.map((k) => el("th", { colspan: String(NAMES.length), class: "group", text: k }))]);
    const sub = el("tr", {}, R.metrics.flatMap(() => NAMES.map((n) => el("th", { class: "sub", text: n }))));
    const seqs = Object.keys(R.tables.per_sequence);
    const body = seqs.map((seq) => {
      const rows = R.tables.per_sequence[seq];
      const link = el("a", { href: "#seq-" + seq, text: seq });
      return el("tr", {}, [el("th", { class: "seq" }, [link]), ...R.metrics.flatMap((k) => metricCells(rows, k))]);
    });
    const total = el("tr", { class: "total" }, [el("th", { text: "total" }),
      ...R.metrics.flatMap((k) => metricCells(R.tables.combined, k))]);
    return el("table", { id: "sequence-table", class: "metrics" },
      [el("thead", {}, [top, sub]), el("tbody", {}, [...body, total])]);
  }

  function idText(id) {
    if (id === null || id === undefined) return "absent";
    return id < 0 ? "missed" : String(id);
  }

  function chip(id) {
    if (id === null || id === undefined || id < 0) return el("span", { class: "chip none", text: idText(id) });
    return el("span", { class: "chip", style: "background:" + idColor(id), text: String(id) });
  }

  function otherCell(ev) {
    const parts = [];
    for (const [name, o] of Object.entries(ev.others)) {
      const shared = ev.also_in.includes(name);
      const kept = !shared && o.before !== null && o.before >= 0 && o.before === o.after;
      const verdict = shared ? "also " + (ev.kind === "switch" ? "switched" : "fragmented")
        : kept ? "kept it" : ev.kind === "switch" ? "no switch" : "no fragment";
      parts.push(el("div", {}, [name + ": ", chip(o.before), " \u2192 ", chip(o.after),
        el("span", { class: shared ? "verdict shared" : "verdict kept", text: " " + verdict })]));
    }
    return el("td", {}, parts);
  }

  function eventRow(ev, index) {
    const imgs = [];
    for (const when of ["before", "after"]) {
      if (ev.images && ev.images[when]) {
        imgs.push(el("figure", {}, [el("a", { href: ev.images[when] }, [el("img", { src: ev.images[when], alt: when, loading: "lazy" })]),
          el("figcaption", { text: when + " (frame " + (when === "before" ? ev.last_frame : ev.frame) + ")" })]));
      }
    }
    const link = el("a", { href: "#" + anchor(ev.sequence, ev.gt_id), text: "gt " + ev.gt_id });
    return el("tr", { class: "event " + ev.kind + (ev.differential ? " differential" : ""), "data-index": String(index) }, [
      el("td", { text: ev.sequence }),
      el("td", { class: "num", text: String(ev.frame) }),
      el("td", {}, [link]),
      el("td", { class: "tracker", text: ev.tracker }),
      el("td", { text: ev.kind }),
      el("td", {}, [chip(ev.old_id), " \u2192 ", chip(ev.new_id),
        el("span", { class: "muted", text: " (last matched frame " + ev.last_frame + ")" })]),
      otherCell(ev),
      el("td", { class: "crops" }, imgs),
    ]);
  }

  function eventsSection() {
    const section = el("section", { id: "events" }, [el("h2", { text: "Identity events" })]);
    const nDiff = R.events.filter((e) => e.differential).length;
    section.appendChild(el("p", { class: "muted", text:
      R.events.length + " events (id switches and fragmentations, TrackEval's CLEAR matching); " + nDiff +
      " that another tracker did not have within " + R.window + " frames are listed first." }));
    const select = el("select", { id: "event-filter" }, [
      el("option", { value: "differential", text: "only events another tracker did not have" }),
      el("option", { value: "all", text: "all events" }),
      el("option", { value: "switch", text: "id switches" }),
      el("option", { value: "fragment", text: "fragmentations" }),
    ]);
    if (nDiff === 0) select.value = "all";
    section.appendChild(el("label", {}, ["Show ", select]));
    const head = el("tr", {}, ["sequence", "frame", "gt", "tracker", "kind", "tracker id", "other trackers", "frames"]
      .map((h) => el("th", { text: h })));
    const body = el("tbody", {}, R.events.map(eventRow));
    section.appendChild(el("table", { id: "event-table", class: "events" }, [el("thead", {}, [head]), body]));
    function apply() {
      const mode = select.value;
      for (const tr of body.children) {
        const ev = R.events[Number(tr.dataset.index)];
        const show = mode === "all" || (mode === "differential" ? ev.differential : ev.kind === mode);
        tr.style.display = show ? "" : "none";
      }
    }
    select.addEventListener("change", apply);
    apply();
    return section;
  }

  function x(frame, frames) {
    return LABEL_W + ((frame - 1) / frames) * AXIS_W;
  }

  function axisSvg(frames) {
    const svg = svgEl("svg", { class: "axis", width: LABEL_W + AXIS_W + 10, height: 22 });
    const raw = Math.max(1, frames / 10), pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
    svg.appendChild(svgEl("line", { x1: LABEL_W, x2: LABEL_W + AXIS_W, y1: 18, y2: 18, class: "axis-line" }));
    const ticks = [1];
    for (let f = step; f <= frames; f += step) if (f > 1) ticks.push(f);
    for (const f of ticks) {
      svg.appendChild(svgEl("line", { x1: x(f, frames), x2: x(f, frames), y1: 14, y2: 18, class: "axis-line" }));
      const t = svgEl("text", { x: x(f, frames), y: 11, class: "tick" });
      t.textContent = String(f);
      svg.appendChild(t);
    }
    const lab = svgEl("text", { x: 4, y: 11, class: "axis-label" });
    lab.textContent = "frame";
    svg.appendChild(lab);
    return svg;
  }

  function identitySvg(seq, identity, frames, events) {
    const height = TOP + NAMES.length * (ROW_H + ROW_GAP) + 2;
    const svg = svgEl("svg", { class: "timeline", width: LABEL_W + AXIS_W + 10, height: height,
      "data-gt": String(identity.gt_id) });
    NAMES.forEach((name, r) => {
      const y = TOP + r * (ROW_H + ROW_GAP);
      const label = svgEl("text", { x: 4, y: y + ROW_H - 3, class: "row-label" });
      label.textContent = name;
      svg.appendChild(label);
      for (const [first, last, id] of identity.tracks[name]) {
        const x0 = x(first, frames), w = Math.max(1, x(last + 1, frames) - x0);
        if (id < 0) {  // missed: the gt is there, no box of this tracker on it
          svg.appendChild(svgEl("line", { x1: x0, x2: x0 + w, y1: y + ROW_H / 2, y2: y + ROW_H / 2, class: "missed" },
            name + ": missed, frames " + first + "-" + last));
          continue;
        }
        svg.appendChild(svgEl("rect", { x: x0, y: y, width: w, height: ROW_H, fill: idColor(id), class: "run" },
          name + " id " + id + ": frames " + first + "-" + last));
        if (w > 8 * String(id).length + 4) {
          const t = svgEl("text", { x: x0 + 2, y: y + ROW_H - 3, class: "run-label" });
          t.textContent = String(id);
          svg.appendChild(t);
        }
      }
      for (const ev of events.filter((e) => e.tracker === name)) {
        const cx = x(ev.frame, frames);
        const cls = "marker " + ev.kind + (ev.differential ? " differential" : "");
        const title = name + " " + ev.kind + " at frame " + ev.frame + ": " + idText(ev.old_id) + " \u2192 " +
          idText(ev.new_id) + (ev.differential ? " (another tracker did not)" : "");
        if (ev.kind === "switch") {
          svg.appendChild(svgEl("path", { d: "M" + (cx - 5) + "," + (y - 4) + " L" + (cx + 5) + "," + (y - 4) +
            " L" + cx + "," + (y + 5) + " Z", class: cls }, title));
        } else {
          svg.appendChild(svgEl("rect", { x: cx - 1.5, y: y - 2, width: 3, height: ROW_H + 4, class: cls }, title));
        }
      }
    });
    return svg;
  }

  function sequenceTimelines(seq, eager) {
    const tl = R.timelines[seq];
    const events = R.events.filter((e) => e.sequence === seq);
    const byGt = new Map();
    for (const ev of events) {
      if (!byGt.has(ev.gt_id)) byGt.set(ev.gt_id, []);
      byGt.get(ev.gt_id).push(ev);
    }
    const nDiff = events.filter((e) => e.differential).length;
    const details = el("details", { id: "seq-" + seq, class: "sequence" });
    details.appendChild(el("summary", {}, [el("strong", { text: seq }),
      " \u2014 " + tl.identities.length + " identities, " + tl.frames + " frames, " + events.length +
      " events (" + nDiff + " in one tracker only)"]));
    const only = el("input", { type: "checkbox", class: "only-events" });
    const body = el("div", { class: "timelines" });
    if (tl.identities.length > MANY_IDENTITIES && byGt.size) {  // long lists: start with the ones that matter
      only.checked = true;
      body.classList.add("only-events");
    }
    details.appendChild(el("label", { class: "filter" }, [only, " only identities with events"]));
    details.appendChild(body);
    let drawn = false;
    function draw() {
      if (drawn) return;
      drawn = true;
      body.appendChild(axisSvg(tl.frames));
      for (const identity of tl.identities) {
        const evs = byGt.get(identity.gt_id) || [];
        const block = el("div", { class: "identity" + (evs.length ? " has-events" : ""), id: anchor(seq, identity.gt_id) },
          [el("div", { class: "gt-label", text: "gt " + identity.gt_id + (evs.length ? " \u2014 " + evs.length + " events" : "") }),
            identitySvg(seq, identity, tl.frames, evs)]);
        body.appendChild(block);
      }
    }
    only.addEventListener("change", () => body.classList.toggle("only-events", only.checked));
    details.addEventListener("toggle", () => { if (details.open) draw(); });
    if (eager) { details.open = true; draw(); }
    return details;
  }

  function legend() {
    return el("p", { class: "legend" }, [
      el("span", { class: "swatch", style: "background:" + idColor(3) }), " tracker id covering the gt (one colour per id) ",
      el("span", { class: "swatch missed-swatch" }), " missed (gt present, no box matched) ",
      el("span", { class: "key-switch", text: "\u25BC" }), " id switch ",
      el("span", { class: "key-frag", text: "|" }), " fragmentation; ",
      el("span", { class: "key-switch differential", text: "\u25BC" }), " bold: another tracker did not have it. Blank: gt not in the frame.",
    ]);
  }

  function main() {
    const app = document.getElementById("app");
    app.appendChild(el("h1", { text: "Identity comparison: " + NAMES.join(" vs ") }));
    app.appendChild(el("p", { class: "muted", text: "Ground truth " + R.gt_folder + " \u00b7 benchmark rules " +
      R.benchmark + " \u00b7 " + Object.keys(R.tables.per_sequence).length + " sequences \u00b7 " +
      NAMES.map((n) => n + " = " + R.trackers[n]).join(" \u00b7 ") }));
    app.appendChild(el("h2", { text: "Total" }));
    app.appendChild(totalTable());
    const counts = el("ul", { class: "counts" }, NAMES.map((n) => {
      const mine = R.events.filter((e) => e.tracker === n);
      const diff = mine.filter((e) => e.differential);
      return el("li", {}, [el("strong", { text: n }), ": " + mine.filter((e) => e.kind === "switch").length +
        " id switches, " + mine.filter((e) => e.kind === "fragment").length + " fragmentations; " +
        diff.filter((e) => e.kind === "switch").length + " switches and " +
        diff.filter((e) => e.kind === "fragment").length + " fragmentations another tracker did not have"]);
    }));
    app.appendChild(counts);
    app.appendChild(el("h2", { text: "Per sequence" }));
    app.appendChild(sequenceTable());
    app.appendChild(eventsSection());
    const tls = el("section", { id: "timelines" }, [el("h2", { text: "Timelines per ground-truth identity" }), legend()]);
    const seqs = Object.keys(R.timelines);
    const total = seqs.reduce((s, q) => s + R.timelines[q].identities.length, 0);
    for (const seq of seqs) tls.appendChild(sequenceTimelines(seq, total <= EAGER_IDENTITIES));
    app.appendChild(tls);
    // A link to an identity opens its sequence first.
    window.addEventListener("hashchange", openTarget);
    openTarget();
  }

  function openTarget() {
    const id = decodeURIComponent(location.hash.slice(1));
    if (!id.startsWith("tl-") && !id.startsWith("seq-")) return;
    for (const d of document.querySelectorAll("details.sequence")) {
      const seq = d.id.slice(4);
      if (id === "seq-" + seq || id.startsWith("tl-" + seq + "-")) {
        if (!d.open) d.open = true;
        d.dispatchEvent(new Event("toggle"));
      }
    }
    const target = document.getElementById(id);
    if (target) target.scrollIntoView();
  }

  main();
})();
