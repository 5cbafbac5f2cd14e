// The durable dashboard's only script: local times, the counts, the live feed of a
// workflow page (server-sent events carrying fragments the server rendered), the actions
// with their confirmation, and reconnecting when the coordinator comes back.
(function () {
  "use strict";

  const banner = document.getElementById("banner");
  const liveState = document.getElementById("live-state");

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((node) => {
      const when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when)) {
        node.title = node.getAttribute("datetime");
        node.textContent = when.toLocaleString();
      }
    });
  }

  function showBanner(message, kind) {
    banner.textContent = message;
    banner.dataset.kind = kind || "";
    banner.hidden = false;
  }

  function hideBanner() {
    banner.hidden = true;
    banner.textContent = "";
  }

  function replace(id, html) {
    const node = document.getElementById(id);
    if (node) {
      node.innerHTML = html;
      localTimes(node);
    }
  }

  function setState(text) {
    if (liveState) liveState.textContent = text;
  }

  // A page that could not reach the coordinator asks again every 2 s, then reloads.
  function reloadWhenBack() {
    const retry = () =>
      fetch("/api/ping")
        .then((reply) => (reply.ok ? location.reload() : setTimeout(retry, 2000)))
        .catch(() => setTimeout(retry, 2000));
    setTimeout(retry, 2000);
  }

  localTimes(document);
  const trouble = banner.querySelector("[data-kind]");
  if (trouble && trouble.dataset.kind === "unavailable") reloadWhenBack();

  const counts = document.getElementById("counts");
  if (counts) {
    fetch(counts.dataset.src)
      .then((reply) => reply.text())
      .then((html) => replace("counts", html))
      .catch(() => (counts.textContent = "counts unavailable"));
  }

  // --- the live feed ----------------------------------------------------------------

  function showValue(data) {
    const events = document.getElementById("events");
    let block = events.querySelector(`[data-event-key="${CSS.escape(data.key)}"]`);
    if (!block) {
      const none = events.querySelector(".none");
      if (none) none.remove();
      events.insertAdjacentHTML("beforeend", data.block);
      block = events.lastElementChild;
      block.querySelector(".versions").innerHTML = "";
    }
    if (data.version >= Number(block.dataset.version)) {
      block.dataset.version = data.version;
      block.querySelector(".event-value").innerHTML = data.value;
      block.querySelector("h3 .event-version").textContent = "v" + data.version;
      block.querySelector(".event-time").innerHTML = data.time;
    }
    const versions = block.querySelector(".versions");
    if (!versions.querySelector(`[data-version="${data.version}"]`)) {
      const later = Array.from(versions.children).find(
        (item) => Number(item.dataset.version) > data.version
      );
      const holder = document.createElement("template");
      holder.innerHTML = data.item;
      versions.insertBefore(holder.content.firstElementChild, later || null);
    }
    localTimes(block);
  }

  let source = null;

  function connect() {
    const url = document.body.dataset.live;
    if (!url) return;
    if (source) source.close();
    source = new EventSource(url);
    setState("connecting…");
    source.onopen = () => setState("live");
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        setState("reconnecting…");
        showBanner("Lost the connection to the dashboard; reconnecting…", "unavailable");
      }
    };
    source.addEventListener("summary", (event) => {
      hideBanner();
      replace("summary", event.data);
    });
    source.addEventListener("steps", (event) => replace("timeline", event.data));
    source.addEventListener("children", (event) => replace("children", event.data));
    source.addEventListener("value", (event) => showValue(JSON.parse(event.data)));
    source.addEventListener("problem", (event) => {
      const data = JSON.parse(event.data);
      source.close();
      showBanner(data.message, data.kind);
      if (data.kind === "unavailable") {
        setState("reconnecting…");
        setTimeout(connect, 2000);
      } else {
        setState("stopped");
      }
    });
    source.addEventListener("end", () => {
      source.close();
      setState("finished");
    });
  }

  connect();

  // --- the live list (WatchWorkflows through /live-list) ----------------------------

  const liveList = document.querySelector("table.workflows[data-live-list]");
  if (liveList) {
    const state = document.getElementById("list-live");
    const rows = liveList.querySelector("tbody");
    const list = new EventSource(liveList.dataset.liveList);
    list.onopen = () => (state.textContent = "live");
    list.onerror = () => (state.textContent = "reconnecting…");
    list.addEventListener("row", (event) => {
      const data = JSON.parse(event.data);
      const old = rows.querySelector(`tr[data-workflow-id="${CSS.escape(data.workflow_id)}"]`);
      if (data.remove) {
        if (old) old.remove();
        return;
      }
      const holder = document.createElement("template");
      holder.innerHTML = data.html.trim();
      const row = holder.content.firstElementChild;
      localTimes(row);
      if (old) {
        old.replaceWith(row);
      } else {
        const empty = rows.querySelector("tr.empty-row");
        if (empty) empty.remove();
        rows.insertBefore(row, rows.firstElementChild);
      }
    });
    list.addEventListener("problem", (event) => {
      state.textContent = "stopped: " + JSON.parse(event.data).message;
      list.close();
    });
  }

  // --- actions ----------------------------------------------------------------------

  const actions = document.querySelector(".actions");
  if (actions) {
    const dialog = document.getElementById("confirm");
    const result = document.getElementById("action-result");
    const id = actions.dataset.workflowId;
    const questions = {
      cancel: () => `Cancel workflow ${id}? Its worker stops at its next step.`,
      resume: () => `Resume workflow ${id}? A worker continues it from its last step.`,
      fork: (step) => `Fork workflow ${id} from step ${step}? A new workflow reruns it from there.`,
    };

    async function act(action, step) {
      result.className = "";
      result.textContent = "…";
      let data;
      try {
        const reply = await fetch("/actions/" + action, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ workflow_id: id, step: step }),
        });
        data = await reply.json();
      } catch (error) {
        data = { ok: false, message: "The dashboard did not answer: " + error };
      }
      result.className = data.ok ? "ok" : "refused";
      result.textContent = data.message;
      if (data.url) {
        const link = document.createElement("a");
        link.href = data.url;
        link.textContent = " Open it";
        result.append(link);
      }
      if (data.ok && data.summary) replace("summary", data.summary);
      if (data.ok && action !== "fork") connect(); // follow what happens next
    }

    actions.querySelectorAll("[data-action]").forEach((button) => {
      button.addEventListener("click", () => {
        const action = button.dataset.action;
        const step = action === "fork" ? Number(actions.querySelector("[name=step]").value) : null;
        document.getElementById("confirm-text").textContent = questions[action](step);
        dialog.returnValue = "";
        dialog.addEventListener(
          "close",
          () => {
            if (dialog.returnValue === "yes") act(action, step);
          },
          { once: true }
        );
        dialog.showModal();
      });
    });
  }
})();
