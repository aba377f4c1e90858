// steep studio: the New run page. The form's schema fields are rendered by the server
// (studio/schema_fields.py, from the config schema); this script only reads their values
// by data-path and posts them as text, so there is no copy of the schema here.
"use strict";

(() => {
  function newRunPage() {
    const { api, el } = studio;
    const form = document.getElementById("run-form");
    const sources = document.getElementById("sources");
    const tpl = document.getElementById("source-row");
    const launch = document.getElementById("launch");
    const checking = document.getElementById("checking");
    let timer = null;
    let seq = 0;       // the form's revision: each check is numbered
    let shown = 0;     // the revision on screen
    let last = null;   // the newest answer

    function pickDataset(row, ref) {  // a dataset the Data Hub lost is shown, marked
      const pick = row.querySelector("[name=dataset]");
      if (![...pick.options].some((o) => o.value === ref)) {
        pick.append(el("option", { value: ref }, `${ref} (missing)`));
      }
      pick.value = ref;
    }
    function addSource(values) {
      const row = tpl.content.firstElementChild.cloneNode(true);
      row.querySelector(".remove").addEventListener("click", () => { row.remove(); schedule(); });
      if (values) {
        pickDataset(row, values.dataset);
        row.querySelector("[name=weight]").value = values.weight ?? 1;
        row.querySelector("[name=role]").value = values.role || "";
        for (const [k, v] of Object.entries(values.length || {})) {  // data.sources[].length
          const box = row.querySelector(`[name=${k}]`);
          if (box) box.value = v ?? "";
        }
      }
      sources.append(row);
      schedule();
    }
    document.getElementById("add-source").addEventListener("click", () => addSource());

    const evalSets = document.getElementById("eval-sets");
    function addEvalSet(values) {
      const row = document.getElementById("eval-row").content.firstElementChild.cloneNode(true);
      row.querySelector(".remove").addEventListener("click", () => { row.remove(); schedule(); });
      if (values) {
        pickDataset(row, values.dataset);
        row.querySelector("[name=role]").value = values.role ?? "general";
      }
      evalSets.append(row);
      schedule();
    }
    document.getElementById("add-eval-set").addEventListener("click", () => addEvalSet());

    // --- schema fields: sections switched on and off, table rows --------------------------
    function sectionsShown() {
      for (const label of form.querySelectorAll("[data-section]")) {
        const toggle = form.querySelector(`[data-path="${label.dataset.section}"]`);
        label.hidden = !(toggle && toggle.checked);
      }
    }
    function addRow(box, values) {
      const row = box.querySelector("template").content.firstElementChild.cloneNode(true);
      row.querySelector(".remove").addEventListener("click", () => { row.remove(); schedule(); });
      for (const [k, v] of Object.entries(values || {})) {
        const input = row.querySelector(`[data-col="${k}"]`);
        if (input) input.value = v;
      }
      box.querySelector(".row-list").append(row);
      schedule();
    }
    for (const box of form.querySelectorAll("[data-rows]")) {
      box.querySelector(".add-row").addEventListener("click", () => addRow(box));
    }

    function fieldValues() {
      const values = {};
      for (const input of form.querySelectorAll("#schema-fields [data-path]")) {
        const label = input.closest("[data-section]");
        if (label && label.hidden) continue;
        if (input.type === "checkbox") values[input.dataset.path] = input.checked;
        else if (input.value.trim() !== "") values[input.dataset.path] = input.value;
      }
      return values;
    }
    function rowValues() {
      const rows = {};
      for (const box of form.querySelectorAll("[data-rows]")) {
        rows[box.dataset.rows] = [...box.querySelectorAll(".row-list .row")].map((row) =>
          Object.fromEntries([...row.querySelectorAll("[data-col]")].map((i) => [i.dataset.col, i.value])));
      }
      return rows;
    }

    function lengthOf(row) {  // the row's length rule, or null when none is set
      const out = {};
      for (const k of ["min_tokens", "upsample_tokens", "upsample_times"]) {
        const v = row.querySelector(`[name=${k}]`).value.trim();
        if (v !== "") out[k] = Number(v);
      }
      return Object.keys(out).length ? out : null;
    }

    function formData() {
      const get = (n) => form.elements[n].value.trim();
      const numOr = (n, dflt) => (get(n) === "" ? dflt : Number(get(n)));
      return {
        name: get("name") || "run",
        base: get("base"),
        base_max_lr: numOr("base_max_lr", null),
        sources: Array.from(sources.querySelectorAll(".source")).map((r) => ({
          dataset: r.querySelector("[name=dataset]").value,
          weight: Number(r.querySelector("[name=weight]").value || 1),
          role: r.querySelector("[name=role]").value,
          length: lengthOf(r),
        })),
        eval_sets: Array.from(evalSets.querySelectorAll(".eval-set")).map((r) => ({
          dataset: r.querySelector("[name=dataset]").value,
          role: r.querySelector("[name=role]").value,
        })),
        domain_share: numOr("domain_share", null),
        lr_fraction: numOr("lr_fraction", 0.1),
        steps: numOr("steps", 100),
        global_batch_tokens: numOr("global_batch_tokens", 16384),
        seq_len: numOr("seq_len", 512),
        micro_batch_size: numOr("micro_batch_size", 1),
        eval_every: numOr("eval_every", null),
        gpus: numOr("gpus", 0),
        cuda_visible_devices: get("cuda_visible_devices"),
        extra_yaml: form.elements["extra_yaml"].value,
        fields: fieldValues(),
        rows: rowValues(),
      };
    }

    function show(res) {
      const list = (id, items) => {
        const ul = document.getElementById(id);
        ul.replaceChildren(...(items || []).map((t) => el("li", {}, t)));
      };
      list("errors", res.errors);
      list("warnings", res.warnings);
      document.getElementById("resolved").textContent = res.yaml || "";
      const s = res.summary || {};
      document.getElementById("summary").textContent = res.ok
        ? `ok · max LR ${Number(s.max_lr).toExponential(2)} (${s.max_lr_source}) · ` +
          `${Number(s.tokens).toLocaleString()} training tokens · ${res.nproc} process(es), ` +
          `${s.grad_accum} micro-batch(es) per step` + (s.plan ? ` · plan: ${s.plan}` : "")
        : `${res.errors.length} problem(s) to fix before launch`;
      const estimate = document.getElementById("estimate");
      if (estimate) estimate.textContent = s.estimate ? `time: ${s.estimate}` : "";
      const command = document.getElementById("command");
      if (!command.hidden) command.textContent = res.command || "";
      const save = document.getElementById("save-config");
      save.hidden = !res.yaml;
      save.href = "data:application/yaml;charset=utf-8," + encodeURIComponent(res.yaml || "");
      save.download = `${(formData().name || "run")}.yaml`;
      launch.disabled = !res.ok;
    }

    async function resolve() {
      const mine = ++seq;
      checking.hidden = false;
      document.getElementById("resolved").classList.add("stale");
      const res = await api("POST", "/api/config/resolve", formData());
      if (mine !== seq) return;  // an older revision's answer: the newer one is on its way
      shown = mine;
      last = res.data;
      checking.hidden = true;
      document.getElementById("resolved").classList.remove("stale");
      document.body.dataset.checked = String(shown);
      show(res.data);
    }
    function schedule() {
      seq++;  // the form changed: what is on screen is for an older revision now
      checking.hidden = false;  // Launch stays as it was: the server checks the form it gets
      document.getElementById("resolved").classList.add("stale");
      clearTimeout(timer);
      timer = setTimeout(resolve, 250);
    }
    form.addEventListener("input", () => { sectionsShown(); schedule(); });
    form.addEventListener("change", () => { sectionsShown(); schedule(); });

    document.getElementById("preview-command").addEventListener("click", () => {
      const command = document.getElementById("command");
      command.hidden = !command.hidden;
      command.textContent = last ? last.command || "(fix the problems first)" : "";
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      launch.disabled = true;
      const status = document.getElementById("launch-status");
      status.textContent = "launching...";
      const res = await api("POST", "/api/jobs", formData());
      if (!res.ok) {
        status.textContent = res.data.error || "not launched: fix the errors";
        if (res.data.errors) show(res.data);
        return;
      }
      location.href = `/runs/${res.data.job.id}`;
    });

    // --- a form filled from another run's config, or from ?base= ---------------------------
    const pre = document.getElementById("prefill-data");
    const filled = pre ? JSON.parse(pre.textContent) : null;
    if (filled) {
      for (const [k, v] of Object.entries(filled.basic || {})) {
        if (form.elements[k] && v !== null && v !== undefined) form.elements[k].value = v;
      }
      for (const [path, v] of Object.entries(filled.fields || {})) {
        const input = form.querySelector(`#schema-fields [data-path="${path}"]`);
        if (!input) continue;
        if (input.type === "checkbox") input.checked = Boolean(v); else input.value = v;
        const section = input.closest("details");
        if (section) section.open = true;
      }
      for (const [path, rows] of Object.entries(filled.rows || {})) {
        const box = form.querySelector(`[data-rows="${path}"]`);
        if (box) { rows.forEach((r) => addRow(box, r)); box.closest("details").open = true; }
      }
      (filled.sources || []).forEach((s) => addSource(s));
      (filled.eval_sets || []).forEach((s) => addEvalSet(s));
      if (filled.extra_yaml) {
        form.elements["extra_yaml"].value = filled.extra_yaml;
        form.elements["extra_yaml"].closest("details").open = true;
      }
    }
    if (!(filled && filled.sources) && tpl.content.querySelector("option")) addSource();
    sectionsShown();
    schedule();
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page === "new_run") newRunPage();
  });
})();
