// The console's one script: the API key, kept for this tab only, sent with every request;
// the API's answers (problem details) shown as messages; the follow-up after an action.
// Loaded from the service itself; the page's Content-Security-Policy allows no other.
"use strict";

(function () {
  const KEY = "signup-service.api-key";
  const body = document.body;
  const signIn = document.getElementById("sign-in");
  const signInForm = document.getElementById("sign-in-form");
  const signInProblem = document.getElementById("sign-in-problem");
  const main = document.getElementById("main");
  const signOut = document.getElementById("sign-out");
  const alertBox = document.getElementById("alert");
  let alertSource = null;

  function key() {
    return sessionStorage.getItem(KEY);
  }

  function show(signedIn) {
    signIn.hidden = signedIn;
    main.hidden = !signedIn;
    signOut.hidden = !signedIn;
    if (!signedIn) {
      document.getElementById("api-key").focus();
    }
  }

  // A problem details body as one line: "Title: detail", or the status if it is not one.
  function describe(status, text, retryAfter) {
    let message = "The service answered " + status + ".";
    try {
      const problem = JSON.parse(text);
      if (problem && problem.title) {
        message = problem.title + (problem.detail ? ": " + problem.detail : "");
      }
    } catch (ignored) {
      // not JSON: keep the status
    }
    if (retryAfter) {
      message += " Try again in " + retryAfter + " s.";
    }
    return message;
  }

  function say(message, source, kind) {
    alertBox.textContent = message;
    alertBox.className = message ? kind || "problem" : "";
    alertSource = source || null;
  }

  function refused(message) {
    sessionStorage.removeItem(KEY);
    signInProblem.textContent = message;
    show(false);
  }

  signInForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    const input = document.getElementById("api-key");
    const candidate = input.value.trim();
    signInProblem.textContent = "Checking the key…";
    let response;
    try {
      response = await fetch(body.dataset.check, {
        headers: { Authorization: "Bearer " + candidate },
        credentials: "omit",
        cache: "no-store",
      });
    } catch (error) {
      signInProblem.textContent = "The service could not be reached: " + error.message;
      return;
    }
    const text = await response.text();
    if (response.status === 401) {
      signInProblem.textContent = "Key refused. " + describe(401, text);
      return;
    }
    if (response.status === 403) {
      signInProblem.textContent = "This key may not see this page. " + describe(403, text);
      return;
    }
    if (!response.ok) {
      signInProblem.textContent = describe(response.status, text, response.headers.get("Retry-After"));
      return;
    }
    input.value = "";
    signInProblem.textContent = "";
    sessionStorage.setItem(KEY, candidate);
    show(true);
    main.focus();
    htmx.trigger(body, "console:key");
  });

  signOut.addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    window.location.reload();
  });

  // Every request htmx makes carries the key; without one, none is made. A tab in the
  // background polls nothing: it catches up at the next tick once it is looked at.
  document.addEventListener("htmx:configRequest", function (event) {
    const current = key();
    const elt = event.detail.elt;
    if (!current || (document.hidden && elt.hasAttribute("data-poll"))) {
      event.preventDefault();
      return;
    }
    event.detail.headers["Authorization"] = "Bearer " + current;
  });

  // The JSON API's answers (a retry's, a resend's, an upload's) are data, never markup:
  // htmx would parse them as HTML even with hx-swap="none", and a user's name in one
  // could then become an element. Only the console's own fragments are swapped in.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const type = event.detail.xhr.getResponseHeader("Content-Type") || "";
    if (!type.startsWith("text/html")) {
      event.detail.shouldSwap = false;
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const message = describe(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After"));
    if (xhr.status === 401) {
      refused("The key was refused. " + message);
      return;
    }
    say(message, event.detail.elt);
  });

  document.addEventListener("htmx:sendError", function (event) {
    say("The service could not be reached; the console tries again.", event.detail.elt);
  });

  // After an action the JSON API accepted (retry, resend, upload): say so, then load
  // what shows its effect, e.g. the retried task's row, watched until it settles.
  document.addEventListener("htmx:afterRequest", function (event) {
    const elt = event.detail.elt;
    if (!event.detail.successful) {
      return;
    }
    if (alertSource === elt) {
      say("", null);
    }
    const then = elt.dataset.thenGet;
    if (!then) {
      return;
    }
    let answer = {};
    try {
      answer = JSON.parse(event.detail.xhr.responseText) || {};
    } catch (ignored) {
      // not JSON: nothing to read from it
    }
    // The API's answer shows at once (a retried task is pending again), before the
    // row is read back and watched.
    const row = elt.closest("[data-status]");
    if (row && typeof answer.status === "string") {
      row.dataset.status = answer.status;
      const badge = row.querySelector(".status");
      if (badge) {
        badge.textContent = answer.status;
        badge.className = "status status-" + answer.status;
      }
    }
    const url = then.replace("{id}", encodeURIComponent(answer.id || ""));
    if (elt.dataset.done) {
      say(elt.dataset.done, elt, "done");
    }
    htmx.ajax("GET", url, {
      target: elt.dataset.thenTarget,
      swap: elt.dataset.thenSwap || "innerHTML",
    });
  });

  // The upload's own progress, as the browser sends it.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    if (elt.dataset.progress) {
      const bar = document.querySelector(elt.dataset.progress);
      bar.value = 0;
      document.getElementById(bar.id + "-text").textContent = "0%";
    }
  });
  document.addEventListener("htmx:xhr:progress", function (event) {
    const elt = event.detail.elt;
    if (!elt.dataset.progress || !event.detail.lengthComputable) {
      return;
    }
    const bar = document.querySelector(elt.dataset.progress);
    const percent = Math.floor((event.detail.loaded * 100) / event.detail.total);
    bar.value = percent;
    document.getElementById(bar.id + "-text").textContent = percent + "%";
  });

  // Links to data (errors.csv) need the key too: fetched with it, then saved.
  document.addEventListener("click", async function (event) {
    const link = event.target.closest("a[data-download]");
    if (!link) {
      return;
    }
    event.preventDefault();
    const response = await fetch(link.href, {
      headers: { Authorization: "Bearer " + key() },
      credentials: "omit",
      cache: "no-store",
    });
    if (!response.ok) {
      say(describe(response.status, await response.text()), link);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = link.dataset.download;
    document.body.appendChild(save);
    save.click();
    save.remove();
    URL.revokeObjectURL(url);
  });

  show(Boolean(key()));
})();
