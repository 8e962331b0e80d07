// The JIT access page: pick a project (or folder, or the organization), see your eligible roles, activate them or ask a peer,
// and approve a peer's request from the link in its mail. Plain DOM, no framework, no CDN:
// it runs under a strict Content-Security-Policy and offline. Text from the API is only ever
// set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let policy = null;
let roles = [];
let mode = null; // { kind: "JIT" | "MPA" | "BREAK_GLASS", entitlements: [...] }
// Set when the page opens and after this person changed something: the next roles listing asks
// for the policies as they are now (Cache-Control: no-cache), not as the listing function last
// stored them (a few seconds old), so an activation just made or approved shows. Other listings
// (another project, the peers) may be answered from the store, at no cost to the person's budget.
let changed = true;

async function api(method, path, body, fresh) {
  const options = { method, headers: { "X-JITACCESS": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  if (fresh) options.headers["Cache-Control"] = "no-cache";
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = (data && (data.message || (data.error && data.error.message))) || `${response.status} ${response.statusText}`;
    throw new Error(response.status === 429 ? throttled(message, response.headers.get("Retry-After")) : message);
  }
  return data;
}

// A 429 that says when to come back (Retry-After, seconds): the server's reason, and the clock
// time, which stays true while the message stays on the screen.
function throttled(message, retryAfter) {
  const seconds = Number(retryAfter);
  if (!retryAfter || !Number.isFinite(seconds) || seconds < 0) return message;
  const at = new Date(Date.now() + seconds * 1000).toLocaleTimeString();
  return `${message} (at ${at})`;
}

function show(id, visible) { $(id).hidden = !visible; }
function showError(error) { $("error").textContent = error.message || String(error); show("error", true); }
function clearMessages() { show("error", false); show("notice", false); }
function notice(text) { $("notice").textContent = text; show("notice", true); }
function time(seconds) { return new Date(seconds * 1000).toLocaleString(); }

// An entitlement's rows in a details table: its project, role and condition (if any).
function entitlementRows(row, entitlement) {
  row("Project", entitlement.projectId);
  row("Role", entitlement.name);
  if (entitlement.resourceCondition) row("Condition", entitlement.resourceCondition);
}
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function start() {
  try {
    policy = await api("GET", "/api/policy");
    $("user").textContent = policy.signedInUser.email;
    $("version").textContent = `JIT access ${policy.applicationVersion}`;
    const params = new URLSearchParams(location.search);
    if (params.get("activation")) {
      await showRequest(params.get("activation"));
    } else if (params.get("request")) {
      await openLedgerRequest(params.get("request"));
    } else {
      await loadProjects(params.get("projectId"));
    }
  } catch (error) {
    showError(error);
  }
}

// Projects, folders and the organization where the caller holds something eligible.
async function loadProjects(preferred) {
  const { resources } = await api("GET", "/api/resources");
  const select = $("project");
  select.replaceChildren();
  if (resources.length === 0) {
    select.append(el("option", "nothing eligible"));
    showError(new Error("You are not eligible for any role in any project, folder or organization."));
    return;
  }
  for (const resource of resources) {
    const option = el("option", resource.kind === "project" ? resource.id : `${resource.kind} ${resource.id.split("/")[1]}`);
    option.value = resource.id;
    select.append(option);
  }
  const ids = resources.map((r) => r.id);
  const remembered = preferred || localStorage.getItem("projectId");
  if (remembered && ids.includes(remembered)) select.value = remembered;
  await loadRoles();
}

// The API path of a resource: `folders/N` and `organizations/N` have their own routes.
function resourcePath(id) {
  const [kind, number] = id.split("/");
  if (number !== undefined && (kind === "folders" || kind === "organizations")) {
    return `/api/${kind}/${encodeURIComponent(number)}`;
  }
  return `/api/projects/${encodeURIComponent(id)}`;
}

async function loadRoles() {
  const project = $("project").value;
  localStorage.setItem("projectId", project);
  show("request-view", false);
  show("result-view", false);
  const data = await api("GET", `${resourcePath(project)}/roles`, undefined, changed);
  changed = false;
  roles = data.entitlements;
  const body = $("roles").querySelector("tbody");
  body.replaceChildren();
  for (const [index, role] of roles.entries()) {
    const row = el("tr");
    const box = el("input");
    box.type = "checkbox";
    box.dataset.index = index;
    box.setAttribute("aria-label", role.name);
    box.addEventListener("change", updateActivateButton);
    const check = el("td");
    check.append(box);
    const name = el("td");
    name.append(el("code", role.name));
    const type = el("td");
    const needs = role.approvalsNeeded > 1 ? `peer approval, needs ${role.approvalsNeeded} approvals` : "peer approval";
    type.append(role.activationType === "MPA" ? el("span", needs, "badge mpa") : el("span", "self-approval", "badge"));
    if (role.breakGlass) type.append(" ", el("span", "emergency access", "badge break-glass"));
    const status = el("td");
    status.append(role.status === "ACTIVE" ? el("span", `active until ${time(role.validUntil)}`, "badge active") : el("span", "available"));
    if (role.status === "ACTIVE" && role.activationId) {
      // An active role is lengthened by extending its grant, not by a second activation.
      const extend = el("a", "Extend…", "extend-link");
      extend.href = `/?request=${encodeURIComponent(role.activationId)}`;
      status.append(" ", extend);
    }
    row.append(check, name, el("td", role.resourceCondition || "–"), type, status);
    body.append(row);
  }
  show("no-roles", roles.length === 0);
  show("roles-view", true);
  updateActivateButton();
  loadLists().catch(showError);
}

// ACTIVATING, EXTENDING, REVOKING and ENDING: IAM is being changed; the next look (or the
// sweeper, within a minute) completes it.
const STATES = {
  APPROVAL_AWAITED: "waiting for approval", ACTIVATING: "being granted", SCHEDULED: "scheduled", ACTIVE: "active",
  EXTENDING: "being extended", REVOKING: "being revoked", ENDING: "being ended",
  DENIED: "denied", WITHDRAWN: "withdrawn", REVOKED: "revoked", EXPIRED: "expired", ENDED: "ended early",
  ACTIVATION_FAILED: "failed",
};

const REVIEWS = { PENDING: "awaiting review", RATIFIED: "ratified", REJECTED: "rejected", UNREVIEWED: "unreviewed" };

function stateBadge(state) { return el("span", STATES[state] || state, `badge state-${state}`); }

// The requests waiting for my review (emergency access to ratify among them), and my own, with
// their true state.
async function loadLists() {
  const only = $("break-glass-only").checked ? "&breakGlass=true" : "";
  const [review, mine] = await Promise.all([api("GET", `/api/requests?view=review${only}`), api("GET", `/api/requests?view=mine${only}`)]);
  const fill = (table, requests, columns) => {
    const body = $(table).querySelector("tbody");
    body.replaceChildren();
    for (const request of requests) {
      const row = el("tr");
      for (const value of columns(request)) row.append(typeof value === "string" ? el("td", value) : wrap(value));
      const open = el("a", "Open");
      open.href = `/?request=${encodeURIComponent(request.id)}`;
      row.append(wrap(open));
      body.append(row);
    }
  };
  const approvals = (r) => r.breakGlass
    ? `emergency: ${r.breakGlass.ratifications.length} of ${r.breakGlass.ratificationsNeeded} ratified (${REVIEWS[r.breakGlass.review]})`
    : r.activationType === "MPA" ? `${r.approvals.length} of ${r.approvalsNeeded}` : "–";
  const role = (r) => r.entitlements.map((e) => e.name).join(", ");
  const project = (r) => (r.entitlements[0] || {}).projectId || "";
  fill("review-list", review.requests, (r) => [r.beneficiary.email, role(r), project(r), approvals(r), stateBadge(r.state)]);
  fill("mine-list", mine.requests, (r) => [role(r), project(r), time(r.endTime), approvals(r), stateBadge(r.state)]);
  show("no-review", review.requests.length === 0);
  show("no-mine", mine.requests.length === 0);
  show("lists-view", true);
}

function wrap(node) { const td = el("td"); td.append(node); return td; }

async function openLedgerRequest(id) {
  document.querySelector(".project").hidden = true;
  showLedgerRequest(await api("GET", `/api/requests/${encodeURIComponent(id)}`));
}

// A request from the ledger: what was asked, its state, approvals, the timeline, and only the
// actions this person may take now.
function showLedgerRequest(request) {
  const me = policy.signedInUser.email;
  const mine = request.beneficiary.email === me;
  const review = request.breakGlass;
  $("result-title").textContent = review
    ? (mine ? "Your emergency access" : `Emergency access by ${request.beneficiary.email}`)
    : (mine ? "Your request" : `${request.beneficiary.email} asks for access`);
  const body = $("result-details");
  body.replaceChildren();
  const row = (name, value) => {
    const tr = el("tr");
    tr.append(el("th", name), typeof value === "string" ? el("td", value) : wrap(value));
    body.append(tr);
  };
  row("State", stateBadge(request.state));
  row("Requested by", request.beneficiary.email);
  if (request.reviewers.length) row("Reviewers", request.reviewers.map((r) => r.email).join(", "));
  if (review) {
    const ratified = review.ratifications.map((r) => r.email).join(", ");
    row("Emergency access", `${REVIEWS[review.review]}: ${review.ratifications.length} of ${review.ratificationsNeeded} ratifications${ratified ? ` (${ratified})` : ""}`);
    row("Review due", time(review.reviewDeadline));
    if (review.escalated) row("Note", "Not ratified by its deadline: the administrators were told.");
  } else if (request.activationType === "MPA") {
    row("Approvals", `${request.approvals.length} of ${request.approvalsNeeded} needed`);
  }
  row("Justification", request.justification);
  for (const entitlement of request.entitlements) entitlementRows(row, entitlement);
  row("From", time(request.startTime));
  row("Until", time(request.endTime));
  if (request.state === "APPROVAL_AWAITED" && !review) row("Request expires", time(request.requestExpiryTime));
  if (request.endTime < request.requestedEndTime) row("Shortened", `by an approver, from ${time(request.requestedEndTime)}`);
  if (request.pendingExtensionEndTime) {
    const approved = (request.extensionApprovals || []).length;
    row("Extension", `until ${time(request.pendingExtensionEndTime)}, waiting for approval (${approved} of ${request.approvalsNeeded})`);
  }
  if (request.supersededBy) row("Replaced by", request.supersededBy);
  if (request.externallyModified) row("Note", "The access was changed or removed outside JIT access.");
  if (["ACTIVATING", "EXTENDING", "REVOKING", "ENDING"].includes(request.state)) {
    row("Note", "IAM is being changed; this completes on the next look, or within a minute.");
  }
  const timeline = $("timeline");
  timeline.replaceChildren();
  for (const entry of request.timeline) {
    const who = entry.actor ? ` by ${entry.actor}` : "";
    const why = entry.reason ? `: ${entry.reason}` : "";
    timeline.append(el("li", `${time(entry.time)}: ${entry.type.toLowerCase().replaceAll("_", " ")}${who}${why}`));
  }
  show("timeline-title", true);
  show("timeline", true);
  for (const action of ACTIONS) {
    const button = $(action);
    button.hidden = !request.actions.includes(action);
    button.onclick = () => act(request, action);
  }
  if (request.pendingExtensionEndTime) {
    $("approve-extension").textContent = `Approve the extension until ${time(request.pendingExtensionEndTime)}`;
  }
  $("withdraw").textContent = ["ACTIVE", "SCHEDULED"].includes(request.state) ? "End my access now" : "Withdraw";
  const reason = $("reason");
  reason.value = "";
  show("reason-field", request.actions.length > 0);
  reason.placeholder = request.approverReasonRequired ? "Required" : review ? "Required to reject or revoke" : "Required to deny or revoke";
  show("roles-view", false);
  show("lists-view", false);
  show("request-view", false);
  show("result-view", true);
}

const ACTIONS = ["approve", "approve-extension", "ratify", "reject", "deny", "withdraw", "revoke", "extend"];

async function act(request, action) {
  clearMessages();
  const buttons = ACTIONS.map($);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const reason = $("reason").value.trim();
    const body = action === "extend"
      ? { activationTimeout: Math.round((request.endTime - request.startTime) / 60) + 60 }
      // Approving an extension names the end it approves: the one shown on this page.
      : action === "approve-extension"
        ? { reason, endTime: new Date(request.pendingExtensionEndTime * 1000).toISOString().replace(".000Z", "Z") }
        : { reason };
    const updated = await api("POST", `/api/requests/${encodeURIComponent(request.id)}/${action}`, body);
    changed = true;
    showLedgerRequest(updated);
    const inProgress = ["ACTIVATING", "EXTENDING", "REVOKING", "ENDING"].includes(updated.state);
    notice(updated.message || (inProgress ? "Recorded; IAM is being changed and this completes within a minute." : {
      approve: "Your approval is recorded.", "approve-extension": "Your approval of the extension is recorded.",
      deny: "The request is denied.", withdraw: "Done.", revoke: "The access is revoked.",
      ratify: "Your ratification is recorded.", reject: "The emergency access is rejected.",
      extend: updated.pendingExtensionEndTime ? "The extension waits for approval; your access runs on meanwhile." : "Your access is extended." }[action]));
  } catch (error) {
    showError(error);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function selectedRoles() {
  return [...document.querySelectorAll("#roles tbody input:checked")].map((box) => roles[Number(box.dataset.index)]);
}

function updateActivateButton() {
  const selected = selectedRoles();
  const peer = selected.filter((r) => r.activationType === "MPA");
  const button = $("activate");
  button.disabled = selected.length === 0 || (peer.length > 0 && selected.length > 1);
  button.title = button.disabled && peer.length > 0 ? "Peer approval is requested for one role at a time" : "";
  button.textContent = peer.length > 0 ? "Request approval…" : "Activate…";
  // Emergency access: one peer-approved role whose approval policy allows it.
  const glass = $("break-glass");
  glass.disabled = !(selected.length === 1 && selected[0].breakGlass);
}

async function openRequest(breakGlass) {
  clearMessages();
  const selected = selectedRoles();
  mode = { kind: breakGlass ? "BREAK_GLASS" : selected[0].activationType, entitlements: selected };
  $("request-title").textContent = { MPA: "Request approval", BREAK_GLASS: "Emergency access", JIT: "Activate" }[mode.kind];
  $("submit").textContent = { MPA: "Send request", BREAK_GLASS: "Grant emergency access now", JIT: "Activate" }[mode.kind];
  $("submit").className = breakGlass ? "danger" : "";
  show("break-glass-warning", breakGlass);
  $("break-glass-confirm").checked = false;
  $("break-glass-confirm").required = breakGlass;
  $("request-roles").textContent = selected.map((r) => r.name).join(", ");
  const justification = $("justification");
  justification.value = "";
  justification.placeholder = policy.justificationHint;
  $("justification-hint").textContent = policy.justificationHint;
  const duration = $("duration");
  duration.replaceChildren();
  const longest = breakGlass ? selected[0].breakGlass.maxDuration : policy.maxActivationTimeout;
  for (const minutes of [5, 15, 30, 60, 120, 240, 480, 1440].filter((m) => m <= longest)) {
    const option = el("option", minutes < 60 ? `${minutes} minutes` : `${minutes / 60} hour${minutes > 60 ? "s" : ""}`);
    option.value = minutes;
    duration.append(option);
  }
  duration.value = breakGlass ? Math.min(longest, 60) : policy.defaultActivationTimeout;
  if (duration.value === "") duration.selectedIndex = duration.options.length - 1;
  $("peers").replaceChildren();
  show("peers-field", mode.kind === "MPA");
  if (mode.kind === "MPA") {
    const project = $("project").value;
    const { peers } = await api("GET", `${resourcePath(project)}/peers?id=${encodeURIComponent(mode.entitlements[0].id)}`);
    if (peers.length === 0) $("peers").append(el("p", "Nobody else holds this role: nobody can approve it.", "hint"));
    for (const peer of peers) {
      const label = el("label");
      const box = el("input");
      box.type = "checkbox";
      box.value = peer.email;
      box.name = "peer";
      label.append(box, el("span", peer.email));
      $("peers").append(label);
    }
  }
  show("roles-view", false);
  show("request-view", true);
  justification.focus();
}

async function submitRequest(event) {
  event.preventDefault();
  clearMessages();
  const project = $("project").value;
  const justification = $("justification").value.trim();
  const minutes = Number($("duration").value);
  $("submit").disabled = true;
  try {
    let result;
    if (mode.kind === "BREAK_GLASS") {
      result = await api("POST", `${resourcePath(project)}/roles/break-glass`,
        { entitlementId: mode.entitlements[0].id, justification, activationTimeout: minutes });
      changed = true;
      showResult("Emergency access granted", result);
      const due = result.breakGlass ? ` by ${time(result.breakGlass.reviewDeadline)}` : "";
      notice(`${result.message || "Emergency access granted."} Reviewers: ${result.reviewers.map((r) => r.email).join(", ")}; they must ratify it${due}.`);
    } else if (mode.kind === "MPA") {
      const peers = [...document.querySelectorAll("#peers input:checked")].map((box) => box.value);
      result = await api("POST", `${resourcePath(project)}/roles/request`,
        { entitlementId: mode.entitlements[0].id, justification, peers, activationTimeout: minutes });
      changed = true;
      showResult("Request sent", result);
      notice(`Your request went to ${peers.join(", ")}. You will get a mail when it is approved.`);
    } else {
      result = await api("POST", `${resourcePath(project)}/roles/self-activate`,
        { entitlementIds: mode.entitlements.map((r) => r.id), justification, activationTimeout: minutes });
      changed = true;
      showResult("Access granted", result);
      notice(result.message || "Your access is active. It can take a minute to reach every Google Cloud service.");
    }
  } catch (error) {
    showError(error);
  } finally {
    $("submit").disabled = false;
  }
}

function showResult(title, result) {
  $("result-title").textContent = title;
  const body = $("result-details");
  body.replaceChildren();
  const row = (name, value) => {
    const tr = el("tr");
    tr.append(el("th", name), el("td", value));
    body.append(tr);
  };
  row("Requested by", result.beneficiary.email);
  if (result.reviewers.length) row("Reviewers", result.reviewers.map((r) => r.email).join(", "));
  row("Justification", result.justification);
  for (const entitlement of result.entitlements) {
    entitlementRows(row, entitlement);
    row("From", time(entitlement.startTime));
    row("Until", time(entitlement.endTime));
    row("Status", { ACTIVE: "active", ACTIVATION_PENDING: "waiting for approval", EXPIRED: "expired" }[entitlement.status] || entitlement.status);
  }
  if (result.requestExpiryTime && result.entitlements.some((e) => e.status === "ACTIVATION_PENDING")) {
    row("Request expires", time(result.requestExpiryTime));
  }
  show("roles-view", false);
  show("lists-view", false);
  show("request-view", false);
  show("result-view", true);
}

async function showRequest(token) {
  document.querySelector(".project").hidden = true;
  const request = await api("GET", `/api/activation-request?activation=${encodeURIComponent(token)}`);
  if (request.request) {
    // The ledger's view: the true state, approvals and timeline, and the allowed actions.
    showLedgerRequest(request.request);
    return;
  }
  const pending = request.entitlements.every((e) => e.status === "ACTIVATION_PENDING");
  showResult(request.isBeneficiary ? "Your request" : `${request.beneficiary.email} asks for access`, request);
  const approve = $("approve");
  approve.hidden = !(request.isReviewer && pending);
  if (!pending && request.entitlements.some((e) => e.status === "EXPIRED")) {
    notice("This request has expired: its activation window has ended.");
  } else if (request.isBeneficiary) {
    notice("Waiting for a reviewer to approve. You will get a mail.");
  }
  approve.onclick = async () => {
    clearMessages();
    approve.disabled = true;
    try {
      const result = await api("POST", `/api/activation-request?activation=${encodeURIComponent(token)}`);
      changed = true;
      showResult("Access approved", result);
      approve.hidden = true;
      notice(result.message || `${request.beneficiary.email} now has the access. They have been told.`);
    } catch (error) {
      showError(error);
    } finally {
      approve.disabled = false;
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("project").addEventListener("change", () => { clearMessages(); loadRoles().catch(showError); });
  $("activate").addEventListener("click", () => openRequest(false).catch(showError));
  $("break-glass").addEventListener("click", () => openRequest(true).catch(showError));
  $("break-glass-only").addEventListener("change", () => loadLists().catch(showError));
  $("request-form").addEventListener("submit", submitRequest);
  $("cancel").addEventListener("click", () => { clearMessages(); show("request-view", false); show("roles-view", true); });
  $("back").addEventListener("click", () => {
    clearMessages();
    show("timeline-title", false);
    show("timeline", false);
    show("reason-field", false);
    ACTIONS.forEach((action) => { $(action).hidden = true; });
    document.querySelector(".project").hidden = false;
    history.replaceState(null, "", "/");
    loadProjects($("project").value).catch(showError);
  });
  start();
});
