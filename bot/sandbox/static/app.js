// The emulator's page: renders the workspace JSON (long-polled from /_emu/state) as a Slack-like UI.
"use strict";

// `failed`: samples whose sending never reached the sandbox (what the service answered is in state.answers);
// `ready`: false until a modal left open before this load is closed.
const ui = { state: null, user: localStorage.getItem("emu-user") || "", view: location.hash.slice(1) || "", failed: {}, following: new Set(), ready: false };
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

function userName(id) {
  const u = ui.state.users.find((x) => x.id === id);
  if (u) return u.name;
  if (id === ui.state.bot.user_id) return ui.state.bot.name;
  return id === "USLACKBOT" ? "Slackbot" : id;
}
function channelName(id) {
  const c = ui.state.channels.find((x) => x.id === id);
  return c ? c.name : id;
}

// Slack mrkdwn: <tokens> first (they hold angle brackets), then *bold* _italic_ ~strike~ `code` ```pre``` > quotes.
function mrkdwn(text) {
  const tokens = [];
  const keep = (html) => `\u0000${tokens.push(html) - 1}\u0000`;
  let s = String(text ?? "").replace(/```([\s\S]*?)```/g, (_, code) => keep(`<pre>${esc(code)}</pre>`));
  s = s.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${esc(code)}</code>`));
  s = s.replace(/<([^<>]+)>/g, (_, inner) => keep(token(inner)));
  s = esc(s);
  s = s.replace(/(^|[\s(])\*([^*\n]+)\*(?=$|[\s).,!?:;])/g, "$1<b>$2</b>");
  s = s.replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s).,!?:;])/g, "$1<i>$2</i>");
  s = s.replace(/(^|[\s(])~([^~\n]+)~(?=$|[\s).,!?:;])/g, "$1<s>$2</s>");
  s = s.replace(/^&gt; ?(.*)$/gm, "<blockquote>$1</blockquote>");
  s = emojify(s);
  s = s.replace(/\n/g, "<br>");
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => tokens[Number(i)]);
}
// Slack's shortcodes: every one the bot writes (bot/, policy/), plus the common ones; an unknown code stays as typed.
const EMOJI = {
  white_check_mark: "✅", heavy_check_mark: "✔️", ballot_box_with_check: "☑️", x: "❌", heavy_multiplication_x: "✖️",
  no_entry: "⛔", no_entry_sign: "🚫", warning: "⚠️", exclamation: "❗", question: "❓", bangbang: "‼️",
  hourglass: "⌛", hourglass_flowing_sand: "⏳", alarm_clock: "⏰", stopwatch: "⏱️", timer_clock: "⏲️",
  clock1: "🕐", clock2: "🕑", clock3: "🕒", clock4: "🕓", clock5: "🕔", clock6: "🕕", clock12: "🕛",
  calendar: "📆", date: "📅", lock: "🔒", unlock: "🔓", key: "🔑", closed_lock_with_key: "🔐", shield: "🛡️",
  rotating_light: "🚨", bell: "🔔", no_bell: "🔕", loudspeaker: "📢", mega: "📣",
  white_circle: "⚪", black_circle: "⚫", red_circle: "🔴", large_blue_circle: "🔵", large_green_circle: "🟢",
  large_yellow_circle: "🟡", large_orange_circle: "🟠", large_purple_circle: "🟣", large_brown_circle: "🟤",
  green_circle: "🟢", yellow_circle: "🟡", orange_circle: "🟠", blue_circle: "🔵", purple_circle: "🟣",
  arrow_up: "⬆️", arrow_down: "⬇️", arrow_right: "➡️", arrow_left: "⬅️", arrow_heading_up: "⤴️",
  arrow_heading_down: "⤵️", arrows_counterclockwise: "🔄", repeat: "🔁", fast_forward: "⏩", rewind: "⏪",
  point_right: "👉", point_left: "👈", point_up: "☝️", point_down: "👇", raised_hand: "✋", hand: "✋", wave: "👋",
  "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎", clap: "👏", pray: "🙏", ok_hand: "👌", muscle: "💪",
  eyes: "👀", thinking_face: "🤔", smile: "😄", smiley: "😃", slightly_smiling_face: "🙂", grinning: "😀",
  joy: "😂", wink: "😉", confused: "😕", disappointed: "😞", cry: "😢", scream: "😱", sweat_smile: "😅",
  face_with_rolling_eyes: "🙄", neutral_face: "😐", zipper_mouth_face: "🤐", sleeping: "😴", sunglasses: "😎",
  tada: "🎉", confetti_ball: "🎊", sparkles: "✨", star: "⭐", fire: "🔥", boom: "💥", zap: "⚡", rocket: "🚀",
  heart: "❤️", broken_heart: "💔", "100": "💯", trophy: "🏆", medal: "🏅", gift: "🎁", balloon: "🎈",
  robot_face: "🤖", memo: "📝", pencil: "📝", pencil2: "✏️", clipboard: "📋", page_facing_up: "📄",
  bookmark_tabs: "📑", file_folder: "📁", open_file_folder: "📂", inbox_tray: "📥", outbox_tray: "📤",
  email: "📧", envelope: "✉️", link: "🔗", paperclip: "📎", pushpin: "📌", round_pushpin: "📍",
  mag: "🔍", mag_right: "🔎", bulb: "💡", gear: "⚙️", wrench: "🔧", hammer: "🔨", hammer_and_wrench: "🛠️",
  package: "📦", money_with_wings: "💸", moneybag: "💰", dollar: "💵", euro: "💶", credit_card: "💳",
  chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉", bar_chart: "📊",
  information_source: "ℹ️", speech_balloon: "💬", thought_balloon: "💭", bust_in_silhouette: "👤",
  busts_in_silhouette: "👥", palm_tree: "🌴", house: "🏠", office: "🏢", globe_with_meridians: "🌐",
  heavy_plus_sign: "➕", heavy_minus_sign: "➖", white_large_square: "⬜", black_large_square: "⬛",
  large_green_square: "🟩", large_yellow_square: "🟨", large_orange_square: "🟧", red_square: "🟥",
  construction: "🚧", stop_sign: "🛑", checkered_flag: "🏁", triangular_flag_on_post: "🚩", new: "🆕",
  ok: "🆗", sos: "🆘", free: "🆓", cool: "🆒", skull: "💀", ghost: "👻", see_no_evil: "🙈", coffee: "☕",
};
const emojify = (html) => html.replace(/:([a-z0-9_+-]+):/g, (m, name) => (Object.hasOwn(EMOJI, name) ? EMOJI[name] : m));
function token(inner) {
  const [target, label] = inner.split("|", 2);
  if (target.startsWith("@")) {
    const id = target.slice(1);
    return `<span class="mention${id === ui.user ? " me" : ""}">@${esc(label || userName(id))}</span>`;
  }
  if (target.startsWith("#")) return `<span class="mention">#${esc(label || channelName(target.slice(1)))}</span>`;
  if (target.startsWith("!date^")) return esc(slackDate(target, label));
  if (target.startsWith("!subteam^")) return `<span class="mention">@${esc(label || target.slice(9))}</span>`;
  if (target.startsWith("!")) return `<span class="mention">@${esc(target.slice(1))}</span>`;
  return `<a href="${esc(target)}" target="_blank" rel="noopener">${esc(label || target)}</a>`;
}
// Slack's {ago}: "in 12 minutes", "3 hours ago", from the reader's clock.
function relative(d) {
  const seconds = Math.round((d.getTime() - Date.now()) / 1000);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return fmt.format(Math.round(seconds / size), unit);
  }
  return fmt.format(seconds, "second");
}
function slackDate(target, fallback) {
  const [, ts, format] = target.split("^");
  const d = new Date(Number(ts) * 1000);
  if (Number.isNaN(d.getTime()) || !format) return fallback || "";
  const parts = {
    date_num: d.toISOString().slice(0, 10),
    date: d.toLocaleDateString(undefined, { month: "long", day: "numeric", year: "numeric" }),
    date_short: d.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" }),
    date_long: d.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    date_pretty: d.toLocaleDateString(undefined, { month: "long", day: "numeric", year: "numeric" }),
    date_short_pretty: d.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" }),
    date_long_pretty: d.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric" }),
    time: d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }),
    time_secs: d.toLocaleTimeString(),
    ago: relative(d),
  };
  return format.replace(/\{(\w+)\}/g, (m, k) => parts[k] ?? m);
}
// plain_text shows shortcodes as emoji unless it says "emoji": false, as Slack does.
function textObj(t) {
  if (!t) return "";
  if (t.type === "mrkdwn") return mrkdwn(t.text);
  const html = esc(t.text).replace(/\n/g, "<br>");
  return t.emoji === false ? html : emojify(html);
}

// Block Kit. `ctx` says where the controls act: {channel, message_ts} or {view_id}.
function renderBlocks(blocks, ctx, errors) {
  return (blocks || []).map((b) => `<div class="block" data-block-id="${esc(b.block_id)}">${renderBlock(b, ctx, errors || {})}</div>`).join("");
}
function renderBlock(b, ctx, errors) {
  switch (b.type) {
    case "header": return `<div class="block-header">${textObj(b.text)}</div>`;
    case "divider": return `<hr class="divider">`;
    case "section": {
      const fields = b.fields ? `<div class="fields">${b.fields.map((f) => `<div>${textObj(f)}</div>`).join("")}</div>` : "";
      const acc = b.accessory ? element(b.accessory, b.block_id, ctx) : "";
      return `<div class="section-row"><div>${textObj(b.text)}${fields}</div>${acc}</div>`;
    }
    case "context": return `<div class="context">${b.elements.map((e) => e.type === "image" ? `<img src="${esc(e.image_url)}" alt="${esc(e.alt_text)}">` : `<span>${textObj(e)}</span>`).join("")}</div>`;
    case "actions": return `<div class="actions">${b.elements.map((e) => element(e, b.block_id, ctx)).join("")}</div>`;
    case "image": return `<img src="${esc(b.image_url)}" alt="${esc(b.alt_text)}" style="max-width:360px">`;
    case "markdown": return mrkdwn(b.text);
    case "input": {
      const err = errors[b.block_id];
      const hint = b.hint ? `<div class="hint">${textObj(b.hint)}</div>` : "";
      return `<div class="input-block"><label>${textObj(b.label)}${b.optional ? " <small>(optional)</small>" : ""}</label>${inputElement(b.element, b.block_id)}${hint}${err ? `<div class="error" data-testid="input-error">${esc(err)}</div>` : ""}</div>`;
    }
    case "rich_text": return esc(JSON.stringify(b.elements).replace(/.*?"text":"([^"]*)".*?/g, "$1"));
    default: return `<small>[${esc(b.type)} block]</small>`;
  }
}
function element(e, blockId, ctx) {
  const data = `data-action-id="${esc(e.action_id)}" data-block-id="${esc(blockId)}" data-ctx='${esc(JSON.stringify(ctx))}'`;
  if (e.type === "button") {
    if (e.url) return `<a class="btn ${esc(e.style || "")}" href="${esc(e.url)}" target="_blank" rel="noopener" ${data} data-click="1">${textObj(e.text)}</a>`;
    return `<button class="btn ${esc(e.style || "")}" ${data} data-click="1">${textObj(e.text)}</button>`;
  }
  if (e.type === "static_select" || e.type === "overflow") {
    const opts = (e.options || []).map((o) => `<option value="${esc(o.value)}">${textObj(o.text)}</option>`).join("");
    return `<select ${data} data-select="1"><option value="">${textObj(e.placeholder) || "Choose…"}</option>${opts}</select>`;
  }
  return `<small>[${esc(e.type)}]</small>`;
}
function inputElement(e, blockId) {
  const name = `${blockId}/${e.action_id}`;
  const init = e.initial_value ?? "";
  if (e.type === "plain_text_input") {
    const ph = e.placeholder ? esc(e.placeholder.text) : "";
    return e.multiline
      ? `<textarea rows="3" name="${esc(name)}" placeholder="${ph}" ${e.max_length ? `maxlength="${e.max_length}"` : ""}>${esc(init)}</textarea>`
      : `<input name="${esc(name)}" value="${esc(init)}" placeholder="${ph}" ${e.max_length ? `maxlength="${e.max_length}"` : ""}>`;
  }
  if (e.type === "static_select" || e.type === "radio_buttons") {
    const opts = (e.options || []).map((o) => `<option value="${esc(o.value)}">${textObj(o.text)}</option>`).join("");
    return `<select name="${esc(name)}"><option value=""></option>${opts}</select>`;
  }
  if (e.type === "multi_static_select" || e.type === "checkboxes") {
    const chosen = new Set((e.initial_options || []).map((o) => o.value));
    const opts = (e.options || []).map((o) => `<option value="${esc(o.value)}"${chosen.has(o.value) ? " selected" : ""}>${textObj(o.text)}</option>`).join("");
    return `<select multiple size="${Math.min(8, (e.options || []).length)}" name="${esc(name)}">${opts}</select>`;
  }
  if (e.type === "users_select") {
    return `<select name="${esc(name)}"><option value=""></option>${ui.state.users.map((u) => `<option value="${u.id}">${esc(u.name)}</option>`).join("")}</select>`;
  }
  const type = { number_input: "number", datepicker: "date", timepicker: "time", email_text_input: "email", url_text_input: "url" }[e.type] || "text";
  return `<input type="${type}" name="${esc(name)}" value="${esc(init)}">`;
}

function renderMessage(m, channel) {
  const who = userName(m.user);
  const initial = m.user === "USLACKBOT" ? "S" : who.slice(0, 1).toUpperCase();
  const avatarClass = m.user === "USLACKBOT" ? "slackbot" : m.is_bot ? "bot" : "";
  const ctx = { channel: channel.id, message_ts: m.ts };
  const body = m.blocks && m.blocks.length ? renderBlocks(m.blocks, ctx) : mrkdwn(m.text);
  const time = new Date(Number(m.ts) * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const replies = m.replies && m.replies.length
    ? `<div class="thread"><div class="thread-count">${m.replies.length} repl${m.replies.length === 1 ? "y" : "ies"}</div>${m.replies.map((r) => renderMessage(r, channel)).join("")}</div>` : "";
  return `<div class="msg ${m.ephemeral ? "ephemeral" : ""}" data-ts="${m.ts}" data-testid="message">
    <div class="avatar ${avatarClass}">${esc(initial)}</div>
    <div class="msg-body"><div class="msg-meta"><b>${esc(who)}</b>${m.is_bot ? '<span class="tag">APP</span>' : ""}<time>${time}</time>${m.edited ? ' <span class="edited">(edited)</span>' : ""}</div>
    ${m.ephemeral ? '<div class="ephemeral-note">Only visible to you</div>' : ""}${body}${replies}</div></div>`;
}

function render() {
  const st = ui.state;
  $("#team-name").textContent = st.team.name;
  const sel = $("#acting-user");
  if (sel.options.length !== st.users.length) {
    sel.innerHTML = st.users.map((u) => `<option value="${u.id}">${esc(u.name)}${u.is_admin ? " (admin)" : ""} · ${u.id}</option>`).join("");
  }
  sel.value = ui.user;
  const channels = st.channels.filter((c) => !c.is_im);
  // With a service behind the page, the natural first step is sending an agent request.
  if (!ui.view) ui.view = st.agent_api_url && st.samples.length ? "samples" : channels[0]?.id || "home";
  $("#channel-list").innerHTML = channels.map((c) => `<a href="#${c.id}" class="${ui.view === c.id ? "active" : ""} ${c.is_member ? "" : "muted"}" data-testid="channel-${esc(c.name)}">${c.is_private ? "⊘" : "#"} ${esc(c.name)}</a>`).join("");
  // The acting person's DM with the bot: what the service tells them privately (a decision made for them).
  const dms = st.channels.filter((c) => c.is_im);
  $("#dm-list").innerHTML = dms.map((c) => `<a href="#${c.id}" class="${ui.view === c.id ? "active" : ""}" data-testid="dm-countersign">@ ${esc(st.bot.name)} (${c.messages.length})</a>`).join("") || '<span class="muted">none yet</span>';
  $("#nav-home").classList.toggle("active", ui.view === "home");
  $("#nav-samples").classList.toggle("active", ui.view === "samples");
  $("#deliveries").innerHTML = st.deliveries.slice().reverse().map((d) => `<li class="${d.error ? "fail" : ""}">${esc(d.kind)} · ${esc(userName(d.user))} → ${d.status ?? "—"}${d.latency_ms != null ? ` ${d.latency_ms} ms` : ""}${d.error ? ` · ${esc(d.error)}` : ""}</li>`).join("");
  const body = $("#view-body");
  const scrolledToEnd = body.scrollHeight - body.scrollTop - body.clientHeight < 40;
  $("#people").hidden = true;
  if (ui.view === "home") renderHome(); else if (ui.view === "samples") renderSamples(); else renderChannel();
  placeScroll(body, ui.shown !== ui.view, scrolledToEnd);
  ui.shown = ui.view;
  renderModal();
}
// A view opens at its top, a channel at its latest messages (as Slack does), and a channel read to
// its end follows new messages; otherwise the reader stays where they are.
function placeScroll(body, opened, scrolledToEnd) {
  const channel = ui.view !== "home" && ui.view !== "samples";
  if (channel && (opened || scrolledToEnd)) body.scrollTop = body.scrollHeight;
  else if (opened) body.scrollTop = 0;
}
function renderChannel() {
  const c = ui.state.channels.find((x) => x.id === ui.view) || ui.state.channels[0];
  $("#view-title").textContent = c.is_im ? `@ ${ui.state.bot.name} (direct messages)` : `${c.is_private ? "⊘" : "#"} ${c.name}`;
  $("#view-sub").textContent = `${c.members.length} members${c.bot_is_member ? " · countersign is here" : ""}${c.is_member ? "" : " · you are not a member"}${c.topic ? ` · ${c.topic}` : ""}`;
  renderPeople(c);
  $("#composer").hidden = false;
  $("#view-body").innerHTML = c.messages.length ? c.messages.map((m) => renderMessage(m, c)).join("") : '<div class="empty">No messages yet.</div>';
}
// Who may click what: the pool members of this channel first, everyone else after; a click acts as them.
function chip(id, reviewer) {
  const u = ui.state.users.find((x) => x.id === id);
  const admin = u && u.is_admin ? " (admin)" : "";
  return `<button class="chip${reviewer ? " reviewer" : ""}${id === ui.user ? " me" : ""}" data-act-as="${esc(id)}" data-testid="act-as-${esc(userName(id))}" title="act as ${esc(userName(id))}">${esc(userName(id))}${admin}</button>`;
}
function poolsIn(channelId) { return ui.state.pools.filter((p) => p.channel === channelId); }
function renderPeople(c) {
  const pools = poolsIn(c.id);
  const reviewers = [...new Set(pools.flatMap((p) => p.members))];
  const others = c.members.filter((m) => !reviewers.includes(m));
  let html;
  if (pools.length) {
    const names = pools.map((p) => `${esc(p.tenant)}/${esc(p.name)}`).join(", ");
    html = `<span>Can approve (pool ${names}):</span>${reviewers.map((id) => chip(id, true)).join("")}`;
    if (others.length) html += `<span>· also here:</span>${others.map((id) => chip(id, false)).join("")}`;
    if (!reviewers.includes(ui.user)) html += `<span class="note">You act as ${esc(userName(ui.user))}, who is not in this pool: the bot will refuse your votes here.</span>`;
  } else {
    html = `<span>Members:</span>${c.members.map((id) => chip(id, false)).join("")}`;
  }
  $("#people").innerHTML = `${html}<span class="hint-line">· click a name to act as them</span>`;
  $("#people").hidden = false;
}
function renderHome() {
  $("#view-title").textContent = "Countersign · Home";
  $("#view-sub").textContent = `as ${userName(ui.user)}`;
  $("#composer").hidden = true;
  const home = ui.state.home;
  $("#view-body").innerHTML = home ? renderBlocks(home.blocks, { view_id: home.id }) : '<div class="empty">Nothing published for you yet (the bot publishes when app_home_opened arrives).</div>';
}
function renderSamples() {
  $("#view-title").textContent = "Agent requests";
  $("#view-sub").textContent = ui.state.agent_api_url ? `POST ${ui.state.agent_api_url}/v1/requests · each sample is a test of the manifests; a card appears in the pool's channel` : "service not running: no agent API URL configured";
  $("#composer").hidden = true;
  const items = ui.state.samples.map((s, i) => `<div class="sample" data-testid="sample">
    <h3>${esc(s.tenant)} · ${esc(s.action)}</h3>${s.name ? `<div>${esc(s.name)}</div>` : ""}
    <div class="body">params ${esc(JSON.stringify(s.params))}${Object.keys(s.context || {}).length ? `<br>context ${esc(JSON.stringify(s.context))}` : ""}</div>
    <button class="btn primary" data-sample="${i}">${s.kind === "question" ? "Send question" : "Send request"}</button>${renderAnswer(answerOf(i))}</div>`);
  $("#view-body").innerHTML = items.length ? `<div class="samples">${items.join("")}</div>` : '<div class="empty">No samples (the manifests have no tests: blocks).</div>';
}
// The service's answer to a sent sample, kept by the sandbox (so a reload shows it) and followed to its decision.
function answerOf(i) { return ui.failed[i] || (ui.state.answers || {})[i]; }
function renderAnswer(a) {
  if (!a) return "";
  const r = a.answer;
  const raw = `<details><summary>HTTP ${a.sent ?? a.status ?? "—"} response</summary><pre>${esc(JSON.stringify(r, null, 2))}</pre></details>`;
  if (a.error) return `<div class="answer fail" data-testid="sample-answer">${a.offline ? OFFLINE : esc(a.error)}</div>`;
  if (!r || typeof r !== "object" || !r.status) {
    const err = r && r.error ? `${r.error.code}: ${r.error.message}` : "unexpected answer";
    return `<div class="answer fail" data-testid="sample-answer">HTTP ${esc(a.status)} · ${esc(err)}${raw}</div>`;
  }
  const approvals = (r.votes || []).filter((v) => v.vote === "approve").length;
  const lines = [`<div><span class="status ${esc(r.status)}" data-testid="sample-status">${esc(r.status.replace("_", " "))}</span> · ${esc(r.mode)} · request <code>${esc(r.id)}</code></div>`];
  if (r.kind === "question") {
    lines[0] = lines[0].replace("· request <code>", "· question <code>");
    if (r.pool) lines.push(`<div>asked of pool <b>${esc(r.pool)}</b></div>`);
    if (r.answer) lines.push(`<div data-testid="sample-answer-text">answer: <b>${esc(r.answer.text)}</b> by ${esc(userName(r.answer.by))}</div>`);
  } else if (r.pool) lines.push(`<div>pool <b>${esc(r.pool)}</b> · ${approvals} of ${r.approvals_required} approvals</div>`);
  if (r.decision) {
    const by = r.decision.by && r.decision.by.startsWith("U") ? userName(r.decision.by) : r.decision.by;
    lines.push(`<div>decision: <b>${esc(r.decision.outcome)}</b> by ${esc(by)}${r.decision.reason ? ` · ${mrkdwn(r.decision.reason)}` : ""}</div>`);
  }
  const pool = ui.state.pools.find((p) => p.tenant === r.tenant && p.name === r.pool);
  if (r.status === "pending" && pool && pool.channel) {
    lines.push(`<div><a href="#${esc(pool.channel)}" data-testid="open-pool">Open #${esc(channelName(pool.channel))}</a> and decide as one of ${pool.members.map((id) => chip(id, true)).join(" ")}</div>`);
  }
  return `<div class="answer" data-testid="sample-answer">${lines.join("")}${raw}</div>`;
}
// Ask the service about each pending request; the sandbox keeps what changed and the long poll brings it.
function followAnswers() {
  for (const a of Object.values(ui.state.answers || {})) {
    const r = a.answer;
    if (!r || r.status !== "pending" || !r.id || ui.following.has(r.id)) continue;
    ui.following.add(r.id);
    post("request", { tenant: r.tenant, id: r.id }, true).finally(() => ui.following.delete(r.id));
  }
}
function renderModal() {
  const m = ui.ready ? ui.state.modal : null;
  const backdrop = $("#modal-backdrop");
  if (!m) { backdrop.hidden = true; ui.modalKey = null; return; }
  const key = `${m.id}:${m.hash}:${JSON.stringify(m.errors)}`;
  if (key === ui.modalKey && !backdrop.hidden) return; // keep what the user typed
  const typed = collectInputs();
  ui.modalKey = key;
  backdrop.hidden = false;
  $("#modal").innerHTML = `<div class="modal-title">${textObj(m.title)}</div><div class="modal-body">${renderBlocks(m.blocks, { view_id: m.id }, m.errors)}</div>
    <div class="modal-foot"><button class="btn" data-modal="close">${textObj(m.close) || "Cancel"}</button>${m.submit ? `<button class="btn primary" data-modal="submit" data-testid="modal-submit">${textObj(m.submit)}</button>` : ""}</div>`;
  for (const [name, value] of Object.entries(typed)) {
    const field = $("#modal").querySelector(`[name="${CSS.escape(name)}"]`);
    if (field) field.value = value;
  }
}
function collectInputs() {
  const out = {};
  document.querySelectorAll("#modal [name]").forEach((el) => {
    if (el.multiple) out[el.name] = [...el.selectedOptions].map((o) => o.value); // every choice, even none
    else if (el.value !== "") out[el.name] = el.value;
  });
  return out;
}

const OFFLINE = "The sandbox is not answering: is <code>countersign sandbox</code> still running?";
async function post(action, body, quiet) {
  let resp;
  try {
    resp = await fetch(`/_emu/ui/${action}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user: ui.user, ...body }) });
  } catch (e) {
    setOffline(true);
    toast(OFFLINE, true, true);
    return { ok: false, offline: true, error: OFFLINE };
  }
  const result = await resp.json().catch(() => ({ ok: false, error: `the sandbox answered HTTP ${resp.status}` }));
  if (!result.ok && !quiet) toast(result.detail || result.error || "failed", true);
  return result;
}
function toast(text, fail, html) {
  const t = $("#toast");
  if (html) t.innerHTML = text; else t.textContent = text;
  t.className = fail ? "fail" : ""; t.hidden = false;
  clearTimeout(ui.toastTimer); ui.toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}
// A banner for as long as the sandbox does not answer the long poll.
function setOffline(down) {
  ui.offline = down;
  const banner = $("#offline");
  if (down) banner.innerHTML = OFFLINE;
  banner.hidden = !down;
}

document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("[data-click],[data-modal],[data-sample],[data-act-as]");
  if (!el) return;
  if (el.dataset.actAs) {
    actAs(el.dataset.actAs);
  } else if (el.dataset.click && !el.href) {
    ev.preventDefault();
    const ctx = JSON.parse(el.dataset.ctx);
    await post("click", { ...ctx, action_id: el.dataset.actionId, block_id: el.dataset.blockId, inputs: ctx.view_id ? collectInputs() : undefined });
  } else if (el.dataset.modal === "submit") {
    await post("submit", { view_id: ui.state.modal.id, inputs: collectInputs() });
  } else if (el.dataset.modal === "close") {
    await closeModal();
  } else if (el.dataset.sample) {
    await sendSample(el);
  }
});
async function sendSample(button) {
  const i = button.dataset.sample;
  button.disabled = true;
  delete ui.failed[i];
  const result = await post("sample", { index: Number(i) }, true);
  if (result.offline) ui.failed[i] = result; else (ui.state.answers ||= {})[i] = result;
  render();
  followAnswers();
}
// Cancel, or Escape as in Slack: the sandbox tells the bot (view_closed) when the view asked for it.
async function closeModal() {
  if (ui.ready && ui.state.modal) await post("close", { view_id: ui.state.modal.id });
}
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("#modal-backdrop").hidden) { ev.preventDefault(); closeModal(); }
});
document.addEventListener("change", async (ev) => {
  const el = ev.target;
  if (el.dataset && el.dataset.select && el.value) {
    await post("click", { ...JSON.parse(el.dataset.ctx), action_id: el.dataset.actionId, block_id: el.dataset.blockId, value: el.value });
  }
});
function actAs(id) {
  ui.user = id;
  localStorage.setItem("emu-user", id);
  refresh(true);
}
$("#acting-user").addEventListener("change", (ev) => actAs(ev.target.value));
$("#composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#composer-input");
  const line = input.value.trim();
  if (!line) return;
  input.value = "";
  const result = await post(line.startsWith("/") ? "command" : "message", { channel: ui.view, line, text: line });
  if (result.offline && !input.value) input.value = line; // not sent: keep it to send again
});
window.addEventListener("hashchange", () => {
  ui.view = location.hash.slice(1);
  if (ui.view === "home") post("home", {});
  render();
});

// Long poll: the server holds the request until something changes.
async function refresh(once) {
  // After an outage the sandbox may be a new one, counting versions from 0 again: ask for its state at once.
  const since = once || !ui.state || ui.offline ? -1 : ui.state.version;
  let state;
  try {
    const resp = await fetch(`/_emu/state?user=${encodeURIComponent(ui.user)}&since=${since}`);
    state = await resp.json();
  } catch (e) {
    setOffline(true);
    throw e;
  }
  setOffline(false);
  if (ui.user && state.as !== ui.user) return; // a poll started before the user switch
  if (!state.users.some((u) => u.id === ui.user)) {
    // First visit (or a user of another workspace): act as the sandbox's reviewer, and see what they see.
    ui.user = state.default_user || state.users[0]?.id || "";
    if (ui.user) return refresh(true);
  }
  const moved = !ui.state || ui.state.version !== state.version;
  ui.state = state;
  render();
  if (moved) followAnswers();
}
// Slack closes modals when its page reloads: a modal still open from before this load is closed.
async function dismissStaleModal() {
  if (ui.state.modal) {
    await post("dismiss", {}, true);
    await refresh(true).catch(() => {});
  }
  ui.ready = true;
  render();
}
(async function start() {
  for (;;) {
    try { await refresh(true); break; } catch (e) { await new Promise((r) => setTimeout(r, 1000)); }
  }
  await dismissStaleModal();
  if (ui.view === "home") post("home", {});
  for (;;) {
    try { await refresh(false); } catch (e) { await new Promise((r) => setTimeout(r, 1000)); }
  }
})();
