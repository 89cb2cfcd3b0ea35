#!/usr/bin/env node
// make-vectors.js - writes AMF0/AMF3 test vectors produced by an independent
// implementation (the npm package bytearray-node, which uses amf0-ts and
// amf3-ts) into this directory.  See README.md here for how to run it.
//
// For every vector it writes NAME.amf0.bin or NAME.amf3.bin (one value,
// encoded with a fresh context), NAME.ampN.json with the value we expect our
// decoder to produce, in the JSON form of docs/amf-json.md, and one line in
// manifest.json.  "canonical": true means our encoder must reproduce the
// bytes exactly from the decoded value; "error" names the SH_E code our
// decoder must return instead of a value.
'use strict'
process.env.TZ = 'UTC' // AMF0 dates carry getTimezoneOffset(); keep it 0

const fs = require('fs')
const path = require('path')
const ByteArray = require('bytearray-node')
const { ObjectEncoding } = require('bytearray-node/enums/')

const out = __dirname

// ---- classes the vectors use ----
class Person {
  constructor (name, age) { this.name = name; this.age = age }
}
class AuctionItem {
  constructor (id, title, price, bids, ends) {
    this.id = id; this.title = title; this.price = price; this.bids = bids; this.ends = ends
  }
}
class ArrayCollection { // flex.messaging.io.ArrayCollection wraps its source array
  constructor (source) { this.source = source }
  writeExternal (o) { o.writeObject(this.source) }
  readExternal (i) { this.source = i.readObject() }
}
for (const enc of [ObjectEncoding.AMF0, ObjectEncoding.AMF3]) {
  ByteArray.registerClassAlias(enc, 'com.example.Person', Person)
  ByteArray.registerClassAlias(enc, 'com.example.AuctionItem', AuctionItem)
}
ByteArray.registerClassAlias(ObjectEncoding.AMF3, 'flex.messaging.io.ArrayCollection', ArrayCollection)
const CLASS = new Map([[Person, 'com.example.Person'], [AuctionItem, 'com.example.AuctionItem'],
  [ArrayCollection, 'flex.messaging.io.ArrayCollection']])

// ---- the JSON form of the value our decoder should return ----
function num (x, enc) {
  if (enc === 3 && (x << 3 >> 3) === x) return { $amf: 'int', value: x }
  if (Number.isNaN(x)) return { $amf: 'number', value: 'NaN' }
  if (x === Infinity) return { $amf: 'number', value: 'Infinity' }
  if (x === -Infinity) return { $amf: 'number', value: '-Infinity' }
  if (Object.is(x, -0)) return { $amf: 'number', value: '-0' }
  return x
}

function members (o, enc) {
  const m = {}
  for (const k in o) m[k] = expect(o[k], enc)
  return m
}

function expect (v, enc) {
  if (v === null) return null
  if (v === undefined) return { $amf: 'undefined' }
  if (typeof v === 'boolean') return v
  if (typeof v === 'number') return num(v, enc)
  if (typeof v === 'string') return v
  if (v instanceof Date) return { $amf: 'date', ms: v.getTime(), tz: 0 }
  if (v instanceof ByteArray) return { $amf: 'bytes', hex: Buffer.from(v.buffer).toString('hex') }
  if (v instanceof Int32Array || v instanceof Uint32Array || v instanceof Float64Array) {
    const kind = v instanceof Int32Array ? 'vector-int' : v instanceof Uint32Array ? 'vector-uint' : 'vector-double'
    return { $amf: kind, fixed: !Object.isExtensible(v), items: Array.from(v, (x) => num(x, 0)) }
  }
  if (Array.isArray(v)) {
    if (enc === 0) { // amf0-ts writes every array as an ECMA array
      return { $amf: 'ecma', count: Object.keys(v).length, members: members(v, enc) }
    }
    const dense = []
    for (let i = 0; i < v.length; i++) dense.push(expect(v[i], enc))
    const assoc = {}
    let nassoc = 0
    for (const k in v) if (isNaN(k)) { assoc[k] = expect(v[k], enc); nassoc++ }
    return nassoc ? { $amf: 'ecma', members: assoc, dense } : dense
  }
  const cls = CLASS.get(v.constructor)
  if (cls && v.writeExternal) return { $amf: 'object', class: cls, external: expect(v.source, enc) }
  if (cls) return { $amf: 'object', class: cls, members: members(v, enc) }
  return members(v, enc)
}

// ---- the vectors ----
const shared = { k: 'v' }
const when = new Date(1700000000123)
const sparse = []; sparse[0] = 1; sparse[3] = 4
const mixed = [1, 2]; mixed.foo = 'bar'
const cyclic = { name: 'loop' }; cyclic.self = cyclic
const ba = new ByteArray(); for (const b of [0, 1, 2, 0xfe, 0xff]) ba.writeUnsignedByte(b)
const fixedVec = Object.preventExtensions(new Int32Array([7, 8]))

const both = {
  null: null,
  undefined: undefined,
  true: true,
  false: false,
  zero: 0,
  one_half: 1.5,
  minus3: -3,
  big: 1e300,
  nan: NaN,
  inf: Infinity,
  ninf: -Infinity,
  int_127: 127,
  int_128: 128,
  int_16383: 16383,
  int_16384: 16384,
  int_2097151: 2097151,
  int_2097152: 2097152,
  int_max29: 268435455,
  int_min29: -268435456,
  over29: 268435456,
  under29: -268435457,
  str_empty: '',
  str_hello: 'hello',
  str_unicode: 'h\u00e9llo \u4e16\u754c \ud83c\udf89',
  str_long: 'x'.repeat(70000),
  date: when,
  object: { a: 1, b: 'x', c: true, d: null },
  nested: { outer: { inner: { deep: [1, 'two'] } } },
  shared_object: { x: shared, y: shared },
  repeated_strings: ['abc', 'abc', { abc: 'abc' }],
  array: [1, 2, 3],
  array_empty: [],
  array_sparse: sparse,
  chat: { from: 'alice', text: 'hello, world', ts: 1700000000123, id: 42 },
  cycle: cyclic,
}
// amf3-ts writes sealed traits as name/value pairs instead of all names
// after the class name (amf3 spec 3.12), so typed objects are AMF0 only here
// (the AMF3 ones are hand-worked vectors in tests/amf/test_amf.c).
const amf0only = {
  typed: new Person('Ann', 42),
  typed_pair: [new Person('Ann', 42), new Person('Bob', 7)],
  auction: new AuctionItem(1001, 'Blue vase', 25.5, 3, when),
}
const amf3only = {
  array_mixed: mixed,
  date_shared: { a: when, b: when },
  bytes: ba,
  vector_int: new Int32Array([0, 1, 2147483647]), // negatives: amf3-ts's writeInt overflows on them
  vector_uint: new Uint32Array([0, 1, 4294967295]),
  vector_double: new Float64Array([1.5, -0.25, 1e-300]),
  vector_fixed: fixedVec,
  array_collection: new ArrayCollection([1, 2, 3]),
}

const manifest = []
function write (name, enc, v) {
  const b = new ByteArray()
  b.objectEncoding = enc === 0 ? ObjectEncoding.AMF0 : ObjectEncoding.AMF3
  b.writeObject(v)
  const base = `${name}.amf${enc}`
  fs.writeFileSync(path.join(out, base + '.bin'), b.buffer)
  const entry = { name: base, enc, bin: base + '.bin' }
  if (v === cyclic) {
    entry.error = 'SH_EUNSUPPORTED'
  } else {
    fs.writeFileSync(path.join(out, base + '.json'), JSON.stringify(expect(v, enc)) + '\n')
    entry.json = base + '.json'
    entry.canonical = true
  }
  manifest.push(entry)
}
for (const [name, v] of Object.entries(both)) { write(name, 0, v); write(name, 3, v) }
for (const [name, v] of Object.entries(amf0only)) write(name, 0, v)
for (const [name, v] of Object.entries(amf3only)) write(name, 3, v)
fs.writeFileSync(path.join(out, 'manifest.json'),
  '[\n' + manifest.map((e) => '  ' + JSON.stringify(e)).join(',\n') + '\n]\n')
console.log(`wrote ${manifest.length} vectors`)
