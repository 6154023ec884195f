//! A self-contained HTML report: the tables rendered here, the bundle's
//! files embedded, and the console's own proof checker (`ui/sha256.js`,
//! SHA-256, RFC 6962 inclusion, Ed25519 signed notes through WebCrypto)
//! inlined, so a browser checks the evidence with no network. Each printed
//! page's footer names the anchor checkpoint.

use crate::model::{Report, Section};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The console's proof checker, shared rather than written twice.
const SHA256_JS: &str = include_str!("../../../ui/sha256.js");

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// JSON safe inside a `<script>` element.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn section_html(out: &mut String, s: &Section) {
    let _ = write!(
        out,
        "<section id=\"s-{}\"><h2>{}</h2>",
        esc(&s.id),
        esc(&s.title)
    );
    if let Some(q) = &s.query {
        let _ = write!(out, "<p class=\"q\">query: <code>{}</code></p>", esc(q));
    }
    let _ = write!(
        out,
        "<p class=\"counts\">count <b>{}</b> (claim) · listed {} · omitted {} · not yet provable {}</p>",
        s.count,
        s.rows.len(),
        s.omitted,
        s.unproven
    );
    for n in &s.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    if !s.groups.is_empty() {
        out.push_str("<table><tr><th>key</th><th>count</th><th>first</th><th>last</th></tr>");
        for g in &s.groups {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.key),
                g.count,
                esc(g.first.as_deref().unwrap_or("")),
                esc(g.last.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if !s.clusters.is_empty() {
        out.push_str("<table><tr><th>cluster</th><th>events</th><th>truncated</th><th>quarantined</th><th>gaps</th></tr>");
        for c in &s.clusters {
            let gaps: Vec<String> = c
                .gaps
                .iter()
                .map(|g| format!("{} – {} ({} h)", g.from, g.until, g.hours))
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&c.cluster),
                c.events,
                c.truncated,
                c.quarantined,
                if gaps.is_empty() { "" } else { "bad" },
                esc(&gaps.join("; "))
            );
        }
        out.push_str("</table>");
    }
    if !s.facts.is_empty() {
        out.push_str("<table>");
        for (k, v) in &s.facts {
            let _ = write!(
                out,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(k),
                esc(&v.to_string())
            );
        }
        out.push_str("</table>");
    }
    if !s.rows.is_empty() {
        out.push_str("<table class=\"rows\"><tr><th>proof</th><th>time</th><th>cluster</th><th>user</th><th>verb</th><th>resource</th><th>namespace/name</th><th>code</th><th>auditID</th><th>rule</th></tr>");
        for r in &s.rows {
            let _ = write!(
                out,
                "<tr data-seq=\"{}\" data-section=\"{}\"><td class=\"proof\">…</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                r.seq,
                esc(&s.id),
                esc(&r.time),
                esc(&r.cluster),
                esc(&r.user),
                esc(&r.verb),
                esc(&r.resource),
                esc(&r.namespace),
                esc(&r.name),
                r.code.map(|c| c.to_string()).unwrap_or_default(),
                esc(&r.audit_id),
                esc(r.rule.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The HTML page for a report and its bundle files (the manifest included).
pub fn render(report: &Report, files: &BTreeMap<String, Vec<u8>>) -> String {
    let embedded: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(k, v)| (k.clone(), kaudit_store::base64_encode(v).into()))
        .collect();
    let footer = format!(
        "Proven against checkpoint {} (tree size {}, signed {}) · key {}",
        report.anchor.file, report.anchor.size, report.anchor.time, report.verifier_key
    );
    let mut body = String::new();
    for s in &report.sections {
        section_html(&mut body, s);
    }
    let proof_notes: String = report
        .proof_notes
        .iter()
        .map(|n| format!("<p class=\"note\" id=\"proof-note\">⚠ {}</p>", esc(n)))
        .collect();
    let proves: String = report
        .proves
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    let checker = SHA256_JS
        .replace("export async function", "async function")
        .replace("export function", "function");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body{{font:13px/1.4 system-ui,sans-serif;margin:2em 2em 4em;color:#111}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:1.6em;border-bottom:1px solid #ccc}}
table{{border-collapse:collapse;margin:.4em 0;width:100%}} td,th{{border:1px solid #ddd;padding:2px 5px;text-align:left;vertical-align:top}}
code{{font-size:11px;word-break:break-all}} .note,.bad{{color:#a40000}} .ok{{color:#0a6b00}}
#verdict{{padding:.6em;border:2px solid #888;margin:1em 0}} #verdict.ok{{border-color:#0a6b00}} #verdict.bad{{border-color:#a40000}}
footer{{position:fixed;bottom:0;left:0;right:0;font-size:10px;background:#fff;border-top:1px solid #ccc;padding:3px 2em}}
@media print{{button{{display:none}} section{{break-inside:auto}}}}
</style></head><body>
<h1>{title}</h1>
<p>{description}</p>
<p>Period <b>{since}</b> to <b>{until}</b> · clusters: {clusters} · template <code>{template}</code> · generated {generated}</p>
<div id="verdict">Checking the evidence in this page…</div>
<p><button id="recheck">Verify again</button> Every row's proof is checked in this browser: SHA-256 of every embedded file against the signed manifest, the manifest's and checkpoints' Ed25519 signatures (WebCrypto, when the browser has Ed25519), each row's inclusion proof, and the consistency proof from the period's first checkpoint to the anchor. <code>kaudit report verify</code> runs the same checks on the bundle.</p>
{proof_notes}<h2>What this report proves</h2><ul>{proves}</ul>
{body}
<footer id="footer">{footer}</footer>
<script type="application/json" id="kaudit-bundle">{bundle}</script>
<script>
{checker}
const FILES = JSON.parse(document.getElementById('kaudit-bundle').textContent);
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const utf8 = (b) => new TextDecoder().decode(b);
function file(name) {{ const v = FILES[name]; return v === undefined ? null : fromBase64(v); }}
function leafData(p, event) {{
  const c = new TextEncoder().encode(p.cluster);
  const out = new Uint8Array(3 + c.length + event.length + 16);
  out[0] = 1; out[1] = c.length >> 8; out[2] = c.length & 255;
  out.set(c, 3); out.set(event, 3 + c.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(3 + c.length + event.length, BigInt(p.seq));
  v.setBigInt64(3 + c.length + event.length + 8, BigInt(p.received_us));
  return out;
}}
async function verifyPage() {{
  const problems = [];
  const key = utf8(file('checkpoint.pub') || new Uint8Array()).trim();
  const manifest = utf8(file('MANIFEST') || new Uint8Array());
  let unchecked = '';
  const sig = await verifyNoteSignature(manifest, key);
  if (sig.unchecked) unchecked = sig.unchecked; else if (!sig.ok) problems.push('MANIFEST: ' + sig.reason);
  const listed = new Map();
  const list = file('manifest.txt') || new Uint8Array();
  if (manifest.split('\n')[1] !== hex(sha256(list))) problems.push('manifest.txt: SHA-256 differs from the one the signed MANIFEST names');
  for (const line of utf8(list).split('\n')) {{
    const i = line.indexOf(' ');
    if (i > 0) listed.set(line.slice(i + 1), line.slice(0, i));
  }}
  for (const name of Object.keys(FILES)) {{
    if (name === 'MANIFEST' || name === 'manifest.txt') continue;
    if (!listed.has(name)) problems.push(name + ': not listed in the signed manifest');
    else if (listed.get(name) !== hex(sha256(file(name)))) problems.push(name + ': SHA-256 differs from the signed manifest');
  }}
  const roots = new Map();
  for (const name of Object.keys(FILES).filter((n) => n.startsWith('checkpoints/'))) {{
    const note = utf8(file(name));
    const s = await verifyNoteSignature(note, key);
    if (!s.ok && !s.unchecked) problems.push(name + ': ' + s.reason);
    const cp = parseNote(note);
    roots.set(cp.size, cp.root);
  }}
  const report = JSON.parse(utf8(file('report.json')));
  const root = roots.get(report.anchor.size);
  if (root === undefined) problems.push(report.anchor.file + ': the anchor checkpoint is missing');
  const cf = file('consistency.json');
  if (!cf) problems.push('consistency.json: missing');
  else {{
    const c = JSON.parse(utf8(cf));
    if (c.old_size !== report.first.size || c.new_size !== report.anchor.size) problems.push("consistency.json: its sizes are not the report's first and anchor checkpoints");
    else if (!roots.has(c.old_size) || !roots.has(c.new_size)) problems.push('consistency.json: a checkpoint it ties is missing');
    else {{
      const r = verifyConsistency({{ old_size: c.old_size, new_size: c.new_size, old_root: roots.get(c.old_size), new_root: roots.get(c.new_size), hashes: c.hashes }});
      if (!r.ok) problems.push('consistency.json: ' + r.reason);
    }}
  }}
  let rows = 0;
  for (const tr of document.querySelectorAll('tr[data-seq]')) {{
    const seq = tr.dataset.seq;
    const ev = file('events/' + seq + '.json');
    const pf = file('proofs/' + seq + '.json');
    let reason = '';
    if (!ev || !pf) reason = 'event or proof missing';
    else {{
      const p = JSON.parse(utf8(pf));
      const data = leafData(p, ev);
      const r = verifyInclusion({{ leaf_index: p.seq, tree_size: p.tree_size, leaf_data: toBase64(data), leaf_hash: toBase64(sha256(new Uint8Array([0, ...data]))), hashes: p.hashes, root }});
      if (!r.ok) reason = r.reason;
    }}
    const cell = tr.querySelector('.proof');
    cell.textContent = reason ? '✗' : '✓';
    cell.className = 'proof ' + (reason ? 'bad' : 'ok');
    cell.title = reason || 'inclusion proof verified against checkpoint ' + report.anchor.size;
    if (reason) problems.push('section ' + tr.dataset.section + ', record ' + seq + ': ' + reason); else rows++;
  }}
  const v = document.getElementById('verdict');
  if (problems.length) {{
    v.className = 'bad';
    v.textContent = 'NOT VERIFIED: ' + problems.join('; ');
  }} else {{
    v.className = 'ok';
    v.textContent = 'Verified in this browser: ' + rows + ' rows proven against checkpoint ' + report.anchor.size + ', consistency from tree size ' + report.first.size + ' checked' + (unchecked ? ' (signatures NOT checked: ' + unchecked + ')' : '; manifest and checkpoint signatures verified with key ' + key);
  }}
  document.body.dataset.verified = problems.length ? 'no' : 'yes';
}}
// A file too damaged to parse is a failed check too, never a page stuck at "Checking".
function run() {{
  verifyPage().catch((e) => {{
    const v = document.getElementById('verdict');
    v.className = 'bad';
    v.textContent = 'NOT VERIFIED: ' + (e && e.message ? e.message : e);
    document.body.dataset.verified = 'no';
  }});
}}
document.getElementById('recheck').addEventListener('click', run);
run();
</script>
</body></html>
"#,
        title = esc(&report.title),
        description = esc(&report.description),
        since = esc(&report.since),
        until = esc(&report.until),
        clusters = if report.clusters.is_empty() {
            "all".to_string()
        } else {
            esc(&report.clusters.join(", "))
        },
        template = esc(&report.template),
        generated = esc(&report.generated),
        proves = proves,
        proof_notes = proof_notes,
        body = body,
        footer = esc(&footer),
        bundle = script_json(&serde_json::Value::Object(embedded)),
        checker = checker,
    )
}
