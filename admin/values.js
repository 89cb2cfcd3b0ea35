// AMF values in their JSON form (docs/amf-json.md) for people: a short
// type name and a readable text to show, and the typed value to send for
// what an operator typed.  What the page reads it sends back unchanged
// (tagged forms included), so a value survives an edit of another slot.

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

const isTagged = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.$amf === 'string';

function hexBytes(hex) {
  return String(hex ?? '').replace(/(..)(?=.)/g, '$1 ');
}

const IDENT = /^[A-Za-z_$][\w$]*$/;
const keyText = (k) => (IDENT.test(k) ? k : JSON.stringify(k));

/**
 * A value as indented text: plain JSON values as JSON (strings quoted),
 * tagged ones by their kind: int(3), date(2026-01-31T12:00:00.000Z),
 * bytes(00 ff), undefined, com.example.Item { ... }, ecma { ... },
 * vector-int [ ... ], dict { key => value }.
 */
export function readable(v, indent = '') {
  const inner = `${indent}  `;
  const list = (open, close, items) => (items.length
    ? `${open}\n${items.map((x) => `${inner}${x}`).join(',\n')}\n${indent}${close}`
    : `${open}${close}`);
  const members = (o) => Object.entries(o ?? {}).map(([k, x]) => `${keyText(k)}: ${readable(x, inner)}`);
  if (v === null || typeof v !== 'object') return typeof v === 'string' ? JSON.stringify(v) : String(v);
  if (Array.isArray(v)) return list('[', ']', v.map((x) => readable(x, inner)));
  if (!isTagged(v)) return list('{', '}', members(v));
  switch (v.$amf) {
    case 'int': case 'number': return `${v.$amf}(${v.value})`;
    case 'undefined': case 'unsupported': case 'null': return v.$amf;
    case 'date': return `date(${dateText(v.ms, v.tz)})`;
    case 'bytes': return `bytes(${hexBytes(v.hex)})`;
    case 'string': return v.hex !== undefined ? `string(hex ${hexBytes(v.hex)})` : JSON.stringify(String(v.text));
    case 'xml': case 'xmldoc': return `${v.$amf}(${JSON.stringify(v.text ?? v.hex)})`;
    case 'object':
      if (v.external !== undefined) return `${v.class} ${readable(v.external, indent)}`;
      return `${v.class ? `${v.class} ` : ''}${list('{', '}', members(v.members))}`;
    case 'ecma': {
      const dense = (v.dense ?? []).map((x, i) => `${i}: ${readable(x, inner)}`);
      return `ecma ${list('{', '}', [...dense, ...members(v.members)])}`;
    }
    case 'vector-int': case 'vector-uint': case 'vector-double': case 'vector-object':
      return `${v.$amf}${v.class ? `<${v.class}>` : ''} ${list('[', ']', (v.items ?? []).map((x) => readable(x, inner)))}`;
    case 'dict':
      return `dict ${list('{', '}', (v.entries ?? []).map(([k, x]) => `${readable(k, inner)} => ${readable(x, inner)}`))}`;
    default: return JSON.stringify(v);
  }
}

function dateText(ms, tz) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return String(isTagged(ms) ? ms.value : ms);
  const d = new Date(ms);
  const iso = Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
  return tz ? `${iso} (tz ${tz} min)` : iso;
}

/**
 * {type, text, block}: a type name ("string", "int", "date", "object
 * com.example.Item" ...), the value as text, and whether the text is
 * multi-line (show it as a block).
 */
export function describeValue(v) {
  if (v === null) return { type: 'null', text: 'null' };
  switch (typeof v) {
    case 'string': return { type: 'string', text: JSON.stringify(v) };
    case 'number': return { type: 'number', text: String(v) };
    case 'boolean': return { type: 'boolean', text: String(v) };
    default: break;
  }
  if (Array.isArray(v)) return { type: `array [${v.length}]`, text: readable(v), block: true };
  if (!isTagged(v)) return { type: `object {${Object.keys(v).length}}`, text: readable(v), block: true };
  switch (v.$amf) {
    case 'int': return { type: 'int', text: String(v.value) };
    case 'number': return { type: 'number', text: String(v.value) };
    case 'undefined': return { type: 'undefined', text: 'undefined' };
    case 'unsupported': return { type: 'unsupported', text: 'unsupported' };
    case 'null': return { type: 'null', text: 'null' };
    case 'date': return { type: 'date', text: dateText(v.ms, v.tz) };
    case 'bytes': {
      const n = String(v.hex ?? '').length / 2;
      return { type: `bytes [${n}]`, text: hexBytes(v.hex), block: n > 24 };
    }
    case 'string':
      return v.hex !== undefined
        ? { type: 'string (not UTF-8)', text: hexBytes(v.hex), block: v.hex.length > 48 }
        : { type: 'string', text: JSON.stringify(String(v.text)) };
    case 'xml': case 'xmldoc':
      return { type: v.$amf, text: v.text ?? hexBytes(v.hex), block: true };
    case 'object': {
      const cls = v.class ? ` ${v.class}` : '';
      const inner = v.external !== undefined ? v.external : (v.members ?? {});
      return { type: `object${cls}`, text: readable(inner), block: true };
    }
    case 'ecma': {
      const n = Object.keys(v.members ?? {}).length + (v.dense?.length ?? 0);
      return { type: `ecma array [${n}]`, text: readable(v), block: true };
    }
    case 'vector-int': case 'vector-uint': case 'vector-double': case 'vector-object': {
      const items = v.items ?? [];
      return { type: `${v.$amf}${v.class ? `<${v.class}>` : ''} [${items.length}]`, text: readable(items), block: true };
    }
    case 'dict': return { type: `dict [${(v.entries ?? []).length}]`, text: readable(v), block: true };
    default: return { type: String(v.$amf), text: JSON.stringify(v, null, 2), block: true };
  }
}

/** The input type and text that show v in the "set a slot" form. */
export function toInput(v) {
  if (v === null) return { type: 'null', text: '' };
  if (typeof v === 'string') return { type: 'string', text: v };
  if (typeof v === 'number') return { type: 'number', text: String(v) };
  if (typeof v === 'boolean') return { type: 'boolean', text: String(v) };
  if (isTagged(v)) {
    if (v.$amf === 'int') return { type: 'int', text: String(v.value) };
    if (v.$amf === 'number') return { type: 'number', text: String(v.value) };
    if (v.$amf === 'date' && typeof v.ms === 'number' && !v.tz) return { type: 'date', text: new Date(v.ms).toISOString() };
  }
  return { type: 'json', text: JSON.stringify(v, null, 2) };
}

/** What each input type expects, for the form's hint. */
export const HINTS = {
  string: 'Text, sent as it is.',
  number: 'A number (a double): 42, -1.5, 1e9, or NaN, Infinity, -Infinity, -0.',
  int: `An integer from ${INT_MIN} to ${INT_MAX}, sent as {"$amf":"int"} (an AMF3 integer).`,
  boolean: 'true or false.',
  null: 'The slot is set to null (the value is not used).',
  date: 'An ISO date (2026-01-31T12:00:00Z) or milliseconds since 1970.',
  json: 'Any value in sohub\'s JSON form of AMF (docs/amf-json.md): plain JSON, or tagged such as {"$amf":"bytes","hex":"00ff"}.',
};

/**
 * The AMF JSON value for what was typed (type: a key of HINTS); throws
 * an Error that says what is wrong.
 */
export function fromInput(type, text) {
  const t = String(text).trim();
  switch (type) {
    case 'string':
      return String(text);
    case 'number': {
      if (['NaN', 'Infinity', '-Infinity', '-0'].includes(t)) return { $amf: 'number', value: t };
      const n = Number(t);
      if (!t || !Number.isFinite(n)) throw new Error(`"${t}" is not a number`);
      return n;
    }
    case 'int': {
      if (!/^[-+]?\d+$/.test(t)) throw new Error(`"${t}" is not an integer`);
      const n = Number(t);
      if (n < INT_MIN || n > INT_MAX) throw new Error(`${t} is outside ${INT_MIN} .. ${INT_MAX}`);
      return { $amf: 'int', value: n };
    }
    case 'boolean':
      if (t === 'true') return true;
      if (t === 'false') return false;
      throw new Error('a boolean is true or false');
    case 'null':
      return null;
    case 'date': {
      const ms = /^[-+]?\d+$/.test(t) ? Number(t) : Date.parse(t);
      if (!t || Number.isNaN(ms)) throw new Error(`"${t}" is not a date`);
      return { $amf: 'date', ms, tz: 0 };
    }
    case 'json':
      try {
        return JSON.parse(t);
      } catch (e) {
        throw new Error(`not JSON: ${e.message}`);
      }
    default:
      throw new Error(`unknown type ${type}`);
  }
}
