// The Downloads tab: the server's jobs, newest first, with their items.  Rendering only.
import { h } from "./dom.js";
import { basename, formatWhen } from "./format.js";
import { TERMINAL_JOB_STATES } from "./controller.js";
import { button, errorLine, STATE_LABELS } from "./widgets.js";

export class DownloadsView {
  constructor(controller) {
    this.c = controller;
    this.el = h("div", { class: "cf-jobs", testid: "comfyfixer-downloads" });
  }

  render() {
    const jobs = this.c.state.jobs;
    this.el.replaceChildren(jobs.length
      ? h("ul", { class: "cf-job-list" }, jobs.map((job) => this.jobLine(job)))
      : h("div", { class: "cf-muted" }, "No downloads yet."));
  }

  jobLine(job) {
    const sum = job.summary ?? {};
    const counts = [`${sum.done ?? 0}/${sum.total ?? (job.items ?? []).length} done`];
    if (sum.failed) counts.push(`${sum.failed} failed`);
    if (sum.cancelled) counts.push(`${sum.cancelled} cancelled`);
    return h("li", { class: "cf-job", testid: "comfyfixer-job", dataset: { jobId: job.id, state: job.state } },
      h("div", { class: "cf-job-head" },
        h("span", { class: `cf-chip cf-chip-${job.state}` }, STATE_LABELS[job.state] ?? job.state),
        h("span", {}, job.kind === "fix" ? "Fix" : "Download"),
        h("span", { class: "cf-muted" }, formatWhen(job.created)),
        h("span", { class: "cf-muted" }, counts.join(" · ")),
        TERMINAL_JOB_STATES.has(job.state) ? null : button("Cancel all", {
          testid: "comfyfixer-cancel-job", kind: "small", onClick: () => this.c.cancelJob(job.id),
        })),
      job.error ? errorLine(job.error) : null,
      h("ul", { class: "cf-job-items" }, (job.items ?? []).map((it) => h("li", { dataset: { state: it.state } },
        h("span", { class: `cf-dot cf-dot-${it.state}`, "aria-hidden": "true" }), basename(it.filename),
        h("span", { class: "cf-muted" }, ` ${STATE_LABELS[it.state] ?? it.state}`),
        it.error ? h("span", { class: "cf-error-inline", title: it.error.message ?? "" }, ` ${it.error.type ?? "error"}`) : null))));
  }
}
