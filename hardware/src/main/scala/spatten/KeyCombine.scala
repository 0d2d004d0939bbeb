package spatten

import chisel3._

/** Combines a row of key MSB elements with a row of key LSB elements into full keys
  * (SPEC.md section 1), element-wise; see [[PlaneUnpacker.combineKey]]. Combinational. */
class KeyCombine(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val msb     = Input(Vec(p.maxHeadDim, SInt(p.dataBits.W)))
    val lsb     = Input(Vec(p.maxHeadDim, SInt(p.dataBits.W)))
    val lsbBits = Input(UInt(4.W))
    val withLsb = Input(Bool())
    val key     = Output(Vec(p.maxHeadDim, SInt(p.dataBits.W)))
  })
  io.key := VecInit(io.msb.zip(io.lsb).map { case (m, l) =>
    PlaneUnpacker.combineKey(m, l, io.lsbBits, io.withLsb)
  })
}
