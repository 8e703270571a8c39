package io.sapiensedge.kit

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A little-endian .npy array (float32/64, int32/64, uint8), values as doubles. */
class Npy(val shape: IntArray, val descr: String, val data: DoubleArray) {
    fun floats() = FloatArray(data.size) { data[it].toFloat() }
    fun ints() = IntArray(data.size) { data[it].toInt() }

    companion object {
        fun read(file: File): Npy {
            val b = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
            check(b.get(0) == 0x93.toByte() && String(file.readBytes(), 1, 5, Charsets.US_ASCII) == "NUMPY") { "$file is not .npy" }
            val major = b.get(6).toInt()
            val headerLen = if (major == 1) b.getShort(8).toInt() and 0xFFFF else b.getInt(8)
            val start = if (major == 1) 10 else 12
            val header = String(file.readBytes(), start, headerLen, Charsets.US_ASCII)
            val descr = Regex("'descr': *'([^']+)'").find(header)!!.groupValues[1]
            check("'fortran_order': False" in header) { "$file is Fortran-ordered" }
            val shape = Regex("'shape': *\\(([^)]*)\\)").find(header)!!.groupValues[1]
                .split(",").map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
            val n = shape.fold(1) { a, s -> a * s }
            b.position(start + headerLen)
            val data = DoubleArray(n)
            for (i in 0 until n) data[i] = when (descr) {
                "<f4" -> b.float.toDouble()
                "<f8" -> b.double
                "<i4" -> b.int.toDouble()
                "<i8" -> b.long.toDouble()
                "|u1" -> (b.get().toInt() and 0xFF).toDouble()
                else -> error("$file: dtype $descr not supported")
            }
            return Npy(shape, descr, data)
        }
    }
}

/** Write a little-endian float32 or int32 .npy (for the Python side to re-check the kit's outputs). */
fun writeNpy(file: File, shape: IntArray, floats: FloatArray? = null, ints: IntArray? = null) {
    val descr = if (floats != null) "<f4" else "<i4"
    val dims = shape.joinToString(", ") + if (shape.size == 1) "," else ""
    var header = "{'descr': '$descr', 'fortran_order': False, 'shape': ($dims), }"
    header += " ".repeat(63 - (10 + header.length) % 64) + "\n"
    val n = floats?.size ?: ints!!.size
    val b = ByteBuffer.allocate(10 + header.length + 4 * n).order(ByteOrder.LITTLE_ENDIAN)
    b.put(0x93.toByte()).put("NUMPY".toByteArray()).put(1).put(0).putShort(header.length.toShort()).put(header.toByteArray())
    if (floats != null) floats.forEach { b.putFloat(it) } else ints!!.forEach { b.putInt(it) }
    file.writeBytes(b.array())
}
