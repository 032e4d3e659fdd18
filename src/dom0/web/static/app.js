// The web console's page: the domain list (polled), the buttons, and the consoles.
// Terminal emulation is xterm.js's (window.Terminal), VNC is noVNC's.

const HEADERS = {"X-Dom0-Request": "1", "Content-Type": "application/json"};
const POLL_MS = 1000;
const statuses = new Map();   // domain name -> [text, isError]
const panels = new Map();     // "console:<name>" / "screen:<name>" -> {close()}

function fmtUptime(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60, sec = s % 60;
  const hms = [h, m, sec].map((v) => String(v).padStart(2, "0")).join(":");
  return d ? `${d} day${d > 1 ? "s" : ""}, ${hms}` : hms;
}

function buttonsFor(d) {
  if (d.domid === 0) return [];
  const st = d.power_state;
  const b = [];
  if (st === "halted" || st === "suspended") b.push("start");
  if (st === "running") b.push("pause");
  if (st === "paused") b.push("unpause");
  if (st === "running" || st === "paused") b.push("shutdown", "reboot", "save", "destroy");
  else if (st === "crashed") b.push("destroy");
  if (d.console) b.push("console");
  if (d.vnc) b.push("screen");
  return b;
}

async function act(name, action) {
  if (action === "console") return openConsole(name);
  if (action === "screen") return openScreen(name);
  let body = {};
  if (action === "save") {
    const file = prompt(`Save ${name} to which file on the host?`, `/var/lib/xen/save/${name}.chk`);
    if (!file) return;
    body = {file};
  }
  if (action === "destroy" && !confirm(`Destroy ${name}?`)) return;
  statuses.set(name, [`${action}: in progress…`, false]);
  render(lastRows);
  try {
    const r = await fetch(`/api/domains/${encodeURIComponent(name)}/${action}`,
                          {method: "POST", headers: HEADERS, body: JSON.stringify(body)});
    const answer = await r.json();
    statuses.set(name, r.ok ? [`${action}: done`, false] : [`${action}: ${answer.error}`, true]);
  } catch (e) {
    statuses.set(name, [`${action}: ${e}`, true]);
  }
  refresh();
}

let lastRows = [];

function render(rows) {
  lastRows = rows;
  const tbody = document.querySelector("#domains tbody");
  const seen = new Set();
  for (const d of rows) {
    seen.add(d.name);
    let tr = tbody.querySelector(`tr[data-name="${CSS.escape(d.name)}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.name = d.name;
      tr.innerHTML = '<td class="name"></td><td class="num domid"></td><td class="state"></td>' +
        '<td class="num memory"></td><td class="num vcpus"></td><td class="num uptime"></td>' +
        '<td class="actions"></td><td class="status"></td>';
      tbody.appendChild(tr);
    }
    tr.dataset.state = d.power_state;
    tr.querySelector(".name").textContent = d.name;
    tr.querySelector(".domid").textContent = d.domid ?? "";
    tr.querySelector(".state").textContent = d.state || d.power_state;
    tr.querySelector(".memory").textContent = d.memory;
    tr.querySelector(".vcpus").textContent = d.vcpus;
    tr.querySelector(".uptime").textContent = d.domid === null ? "" : fmtUptime(d.uptime);
    const wanted = buttonsFor(d);
    const cell = tr.querySelector(".actions");
    if (cell.dataset.buttons !== wanted.join(",")) {
      cell.dataset.buttons = wanted.join(",");
      cell.replaceChildren(...wanted.map((a) => {
        const btn = document.createElement("button");
        btn.textContent = a;
        btn.className = `act-${a}`;
        btn.onclick = () => act(d.name, a);
        return btn;
      }));
    }
    const [text, isError] = statuses.get(d.name) || ["", false];
    const status = tr.querySelector(".status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }
  for (const tr of [...tbody.children]) if (!seen.has(tr.dataset.name)) tr.remove();
}

async function refresh() {
  try {
    const r = await fetch("/api/domains");
    if (r.status === 401) { location.href = "/login"; return; }
    render((await r.json()).result);
    document.getElementById("message").textContent = "";
  } catch (e) {
    document.getElementById("message").textContent = `xend unreachable: ${e}`;
  }
}

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

function panel(key, title) {
  if (panels.has(key)) return null;
  const section = document.createElement("div");
  section.className = "panel";
  section.id = key.replace(":", "-");
  section.innerHTML = '<header><span class="title"></span><span class="role"></span>' +
    '<button class="close">close</button></header><div class="body"></div>';
  section.querySelector(".title").textContent = title;
  document.getElementById("panels").appendChild(section);
  return section;
}

function openConsole(name) {
  const key = `console:${name}`;
  const section = panel(key, `${name}: serial console`);
  if (!section) return;
  const term = new Terminal({cols: 100, rows: 30, rendererType: "dom"});
  term.open(section.querySelector(".body"));
  const ws = new WebSocket(wsUrl(`/ws/console/${encodeURIComponent(name)}`));
  ws.binaryType = "arraybuffer";
  const decoder = new TextDecoder();
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const role = JSON.parse(ev.data).role;
      section.querySelector(".role").textContent = role === "writer" ? "" : "(watching: another console types)";
      section.dataset.role = role;
    } else {
      term.write(decoder.decode(ev.data, {stream: true}));
    }
  };
  ws.onclose = () => { section.querySelector(".role").textContent = "(disconnected)"; };
  term.on("data", (data) => { if (ws.readyState === WebSocket.OPEN) ws.send(data); });
  term.focus();
  const close = () => { ws.close(); term.destroy(); section.remove(); panels.delete(key); };
  section.querySelector(".close").onclick = close;
  panels.set(key, {close});
}

async function openScreen(name) {
  const key = `screen:${name}`;
  const section = panel(key, `${name}: screen`);
  if (!section) return;
  const body = section.querySelector(".body");
  body.className = "body screen";
  let password = "";
  const r = await fetch(`/api/domains/${encodeURIComponent(name)}/vnc`);
  if (r.ok) password = (await r.json()).result.password;
  const {default: RFB} = await import("/novnc/core/rfb.js");
  const rfb = new RFB(body, wsUrl(`/ws/vnc/${encodeURIComponent(name)}`),
                      {credentials: {password}});
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => { section.dataset.connected = "1"; });
  rfb.addEventListener("disconnect", () => {
    section.querySelector(".role").textContent = "(disconnected)";
  });
  rfb.addEventListener("securityfailure", (e) => {
    section.querySelector(".role").textContent = `(refused: ${e.detail.reason || "password"})`;
  });
  const close = () => { rfb.disconnect(); section.remove(); panels.delete(key); };
  section.querySelector(".close").onclick = close;
  panels.set(key, {close});
}

document.getElementById("logout").onclick = async () => {
  await fetch("/logout", {method: "POST", headers: HEADERS});
  location.href = "/login";
};

refresh();
setInterval(refresh, POLL_MS);
