// SHA-256 (FIPS 180-4) and RFC 6962/9162 inclusion-proof checking, so the
// browser itself confirms that an event is in the signed tree (it does not
// need a secure context, unlike crypto.subtle).

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

/** SHA-256 of a Uint8Array, as a Uint8Array of 32 bytes. */
export function sha256(data) {
  const bitLen = data.length * 8;
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const hs = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = hs;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    hs[0] += a; hs[1] += b; hs[2] += c; hs[3] += d; hs[4] += e; hs[5] += f; hs[6] += g; hs[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, hs[i]);
  return out;
}

export function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toBase64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function node(prefix, a, b) {
  const buf = new Uint8Array(1 + a.length + (b ? b.length : 0));
  buf[0] = prefix;
  buf.set(a, 1);
  if (b) buf.set(b, 1 + a.length);
  return sha256(buf);
}

/**
 * Checks a proof as the API serves it ({leaf_index, tree_size, leaf_hash,
 * leaf_data, hashes, root}, base64): the leaf hash is SHA-256(0x00 || data)
 * and the audit path leads to the root. Returns {ok, reason}.
 */
export function verifyInclusion(p) {
  const leaf = node(0x00, fromBase64(p.leaf_data));
  if (toBase64(leaf) !== p.leaf_hash) return { ok: false, reason: 'leaf hash does not match the leaf data' };
  if (p.leaf_index >= p.tree_size) return { ok: false, reason: 'leaf index beyond tree size' };
  let fn = p.leaf_index;
  let sn = p.tree_size - 1;
  let r = leaf;
  for (const b64 of p.hashes) {
    if (sn === 0) return { ok: false, reason: 'audit path too long' };
    const h = fromBase64(b64);
    if (fn % 2 === 1 || fn === sn) {
      r = node(0x01, h, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = node(0x01, r, h);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return { ok: false, reason: 'audit path too short' };
  if (toBase64(r) !== p.root) return { ok: false, reason: 'audit path leads to another root' };
  return { ok: true, reason: '' };
}

/**
 * Checks an RFC 6962 consistency proof ({old_size, new_size, old_root,
 * new_root, hashes}, base64): the tree of new_size leaves extends the tree of
 * old_size leaves without changing any of them. Returns {ok, reason}; the
 * same algorithm as kaudit-store's merkle::verify_consistency.
 */
export function verifyConsistency(p) {
  const { old_size: m, new_size: n } = p;
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return { ok: false, reason: 'old size beyond new size' };
  if (m === n) {
    return p.hashes.length === 0 && p.old_root === p.new_root ? { ok: true, reason: '' } : { ok: false, reason: 'equal sizes need equal roots and an empty proof' };
  }
  if (m === 0) return p.hashes.length === 0 ? { ok: true, reason: '' } : { ok: false, reason: 'a proof from the empty tree must be empty' };
  const path = p.hashes.map(fromBase64);
  // A power-of-two old tree is a complete subtree: its root starts the path.
  if (Number.isInteger(Math.log2(m))) path.unshift(fromBase64(p.old_root));
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  if (path.length === 0) return { ok: false, reason: 'empty consistency proof' };
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return { ok: false, reason: 'consistency proof too long' };
    if (fn % 2 === 1 || fn === sn) {
      fr = node(0x01, c, fr);
      sr = node(0x01, c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      sr = node(0x01, sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return { ok: false, reason: 'consistency proof too short' };
  if (toBase64(fr) !== p.old_root) return { ok: false, reason: 'the proof does not lead to the old root' };
  if (toBase64(sr) !== p.new_root) return { ok: false, reason: 'the proof does not lead to the new root: the log was rewritten between the checkpoints' };
  return { ok: true, reason: '' };
}

/** The size and root lines of a signed checkpoint note. */
export function parseNote(note) {
  const lines = String(note || '').split('\n');
  return { origin: lines[0], size: Number(lines[1]), root: lines[2] };
}

/**
 * Splits leaf_data (version 1: 0x01, u16 cluster length, cluster, event
 * bytes, u64 seq, i64 received µs, big endian) into its parts, or returns
 * {error}.
 */
export function parseLeaf(data) {
  if (data.length < 3 + 16) return { error: 'leaf data shorter than its fixed fields' };
  if (data[0] !== 1) return { error: 'unknown leaf layout version' };
  const clen = (data[1] << 8) | data[2];
  if (data.length < 3 + clen + 16) return { error: 'cluster name runs past the leaf' };
  const dec = new TextDecoder('utf-8', { fatal: true });
  let cluster;
  try { cluster = dec.decode(data.subarray(3, 3 + clen)); } catch { return { error: 'cluster name is not UTF-8' }; }
  const t = data.length - 16;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { cluster, event: data.subarray(3 + clen, t), seq: Number(view.getBigUint64(t)) };
}

/**
 * Whether leaf_data holds the bytes of the event shown: same sequence
 * number, cluster, and an event that parses to the same JSON. Returns {ok, reason}.
 */
export function leafHoldsEvent(p, stage) {
  const leaf = parseLeaf(fromBase64(p.leaf_data));
  if (leaf.error) return { ok: false, reason: leaf.error };
  if (leaf.seq !== stage.seq || leaf.seq !== p.leaf_index) return { ok: false, reason: `the leaf is record ${leaf.seq}, not ${stage.seq}` };
  if (leaf.cluster !== stage.cluster) return { ok: false, reason: `the leaf belongs to cluster ${leaf.cluster}, not ${stage.cluster}` };
  let proven;
  try {
    proven = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(leaf.event));
  } catch {
    return { ok: false, reason: 'the leaf does not hold a JSON event' };
  }
  if (JSON.stringify(proven) !== JSON.stringify(stage.event)) return { ok: false, reason: 'the event shown is not the event in the proven leaf' };
  return { ok: true, reason: '' };
}

/**
 * Checks a signed note (`<text>\n\n— <name> <base64(keyid || sig)>`) against a
 * verifier key `name+hexkeyid+base64(0x01 || pubkey)` with WebCrypto Ed25519.
 * Returns {ok, reason} or {unchecked: reason} when the browser cannot check
 * Ed25519.
 */
export async function verifyNoteSignature(note, keyText) {
  // name+hexkeyid+base64: the base64 part may itself hold '+'.
  const t = String(keyText || '').trim();
  const i = t.indexOf('+');
  const j = i < 0 ? -1 : t.indexOf('+', i + 1);
  const [name, idHex, keyB64] = j < 0 ? ['', '', ''] : [t.slice(0, i), t.slice(i + 1, j), t.slice(j + 1)];
  if (!name || !/^[0-9a-f]{8}$/.test(idHex)) return { ok: false, reason: 'the verifier key is malformed' };
  let key;
  try { key = fromBase64(keyB64); } catch { return { ok: false, reason: 'the verifier key is not base64' }; }
  if (key.length !== 33 || key[0] !== 1) return { ok: false, reason: 'the verifier key is not an Ed25519 key' };
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return { ok: false, reason: 'the checkpoint has no signature' };
  const text = note.slice(0, split + 1);
  const want = parseInt(idHex, 16) >>> 0;
  let sig = null;
  for (const line of note.slice(split + 2).split('\n')) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) return { ok: false, reason: 'malformed signature line' };
    if (m[1] !== name) continue;
    let blob;
    try { blob = fromBase64(m[2]); } catch { return { ok: false, reason: 'signature is not base64' }; }
    if (blob.length !== 68) continue;
    const id = ((blob[0] << 24) | (blob[1] << 16) | (blob[2] << 8) | blob[3]) >>> 0;
    if (id === want) sig = blob.subarray(4);
  }
  if (!sig) return { ok: false, reason: `the checkpoint carries no signature by ${name}` };
  // WebCrypto exists only in a secure context (HTTPS or loopback), and
  // Ed25519 only in recent browsers: without it, say so rather than "verified".
  if (!globalThis.crypto || !crypto.subtle) return { unchecked: 'this page has no WebCrypto (not a secure context)' };
  let k;
  try {
    k = await crypto.subtle.importKey('raw', key.subarray(1), { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    if (e && e.name === 'NotSupportedError') return { unchecked: 'this browser cannot check Ed25519 signatures' };
    return { ok: false, reason: `the verifier key could not be used: ${e.message || e}` };
  }
  try {
    const good = await crypto.subtle.verify({ name: 'Ed25519' }, k, sig, new TextEncoder().encode(text));
    return good ? { ok: true, reason: '' } : { ok: false, reason: 'the checkpoint signature is invalid' };
  } catch (e) {
    return { ok: false, reason: `the signature could not be checked: ${e.message || e}` };
  }
}
