package io.sapiensedge.kit

/**
 * A small JSON reader for manifests, with the canonical writer of manifest.py's `manifest_digest`
 * (sorted keys, no whitespace, ASCII escapes). Numbers keep their source text, so the canonical
 * form of a manifest written by Python is byte-identical to Python's (no float re-formatting).
 */
sealed class Json {
    data class Obj(val fields: Map<String, Json>) : Json()
    data class Arr(val items: List<Json>) : Json()
    data class Str(val value: String) : Json()
    data class Num(val text: String) : Json() {
        val double: Double get() = text.toDouble()
        val isInt: Boolean get() = text.none { it == '.' || it == 'e' || it == 'E' }
    }
    data class Bool(val value: Boolean) : Json()
    object Null : Json()

    companion object {
        fun parse(text: String): Json = JsonReader(text).readDocument()
    }
}

/** Thrown for malformed JSON; callers turn it into a typed error naming the file. */
class JsonSyntaxException(message: String) : RuntimeException(message)

private class JsonReader(private val s: String) {
    private var i = 0

    fun readDocument(): Json {
        val v = value()
        skipWs()
        if (i != s.length) fail("trailing characters")
        return v
    }

    private fun fail(what: String): Nothing = throw JsonSyntaxException("$what at offset $i")

    private fun skipWs() {
        while (i < s.length && s[i] in " \t\r\n") i++
    }

    private fun value(): Json {
        skipWs()
        if (i >= s.length) fail("unexpected end")
        return when (val c = s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> Json.Str(str())
            't' -> literal("true", Json.Bool(true))
            'f' -> literal("false", Json.Bool(false))
            'n' -> literal("null", Json.Null)
            else -> if (c == '-' || c.isDigit()) num() else fail("unexpected '$c'")
        }
    }

    private fun literal(word: String, v: Json): Json {
        if (!s.startsWith(word, i)) fail("bad literal")
        i += word.length
        return v
    }

    private fun obj(): Json {
        i++
        val map = LinkedHashMap<String, Json>()
        skipWs()
        if (i < s.length && s[i] == '}') { i++; return Json.Obj(map) }
        while (true) {
            skipWs()
            if (i >= s.length || s[i] != '"') fail("expected a key")
            val key = str()
            skipWs()
            if (i >= s.length || s[i] != ':') fail("expected ':'")
            i++
            map[key] = value()
            skipWs()
            if (i >= s.length) fail("unexpected end")
            if (s[i] == ',') { i++; continue }
            if (s[i] == '}') { i++; return Json.Obj(map) }
            fail("expected ',' or '}'")
        }
    }

    private fun arr(): Json {
        i++
        val items = ArrayList<Json>()
        skipWs()
        if (i < s.length && s[i] == ']') { i++; return Json.Arr(items) }
        while (true) {
            items.add(value())
            skipWs()
            if (i >= s.length) fail("unexpected end")
            if (s[i] == ',') { i++; continue }
            if (s[i] == ']') { i++; return Json.Arr(items) }
            fail("expected ',' or ']'")
        }
    }

    private fun str(): String {
        i++
        val sb = StringBuilder()
        while (true) {
            if (i >= s.length) fail("unterminated string")
            val c = s[i++]
            when {
                c == '"' -> return sb.toString()
                c == '\\' -> {
                    if (i >= s.length) fail("bad escape")
                    when (val e = s[i++]) {
                        '"', '\\', '/' -> sb.append(e)
                        'b' -> sb.append('\b')
                        'f' -> sb.append('\u000c')
                        'n' -> sb.append('\n')
                        'r' -> sb.append('\r')
                        't' -> sb.append('\t')
                        'u' -> {
                            if (i + 4 > s.length) fail("bad \\u escape")
                            sb.append(s.substring(i, i + 4).toInt(16).toChar())
                            i += 4
                        }
                        else -> fail("bad escape '\\$e'")
                    }
                }
                else -> sb.append(c)
            }
        }
    }

    private fun num(): Json {
        val start = i
        if (s[i] == '-') i++
        while (i < s.length && (s[i].isDigit() || s[i] in ".eE+-")) i++
        val text = s.substring(start, i)
        text.toDoubleOrNull() ?: fail("bad number '$text'")
        return Json.Num(text)
    }
}

/** Python's `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`. */
fun canonicalJson(v: Json): String = StringBuilder().also { writeCanonical(v, it) }.toString()

private fun writeCanonical(v: Json, out: StringBuilder) {
    when (v) {
        is Json.Obj -> {
            out.append('{')
            // Python sorts str keys by code point; Kotlin's String order is by UTF-16 unit: equal for the BMP.
            v.fields.keys.sorted().forEachIndexed { k, key ->
                if (k > 0) out.append(',')
                writeString(key, out)
                out.append(':')
                writeCanonical(v.fields.getValue(key), out)
            }
            out.append('}')
        }
        is Json.Arr -> {
            out.append('[')
            v.items.forEachIndexed { k, item -> if (k > 0) out.append(','); writeCanonical(item, out) }
            out.append(']')
        }
        is Json.Str -> writeString(v.value, out)
        is Json.Num -> out.append(v.text)
        is Json.Bool -> out.append(if (v.value) "true" else "false")
        Json.Null -> out.append("null")
    }
}

private fun writeString(s: String, out: StringBuilder) {
    out.append('"')
    for (c in s) {
        when {
            c == '"' -> out.append("\\\"")
            c == '\\' -> out.append("\\\\")
            c == '\n' -> out.append("\\n")
            c == '\r' -> out.append("\\r")
            c == '\t' -> out.append("\\t")
            c == '\b' -> out.append("\\b")
            c == '\u000c' -> out.append("\\f")
            c.code < 0x20 || c.code > 0x7e -> out.append("\\u").append("%04x".format(c.code))
            else -> out.append(c)
        }
    }
    out.append('"')
}
