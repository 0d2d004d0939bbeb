package spatten

import chisel3._
import chisel3.util._

/** Collects the burst groups of one plane row into the row's bytes (burst `b` of the row
  * in bits `[b * burstBits, (b + 1) * burstBits)`; bursts past the row's end read as zero).
  *
  * Double-buffered: the partial row fills one register while the finished row waits in
  * the output register, so one group (up to [[RowFetcher.width]] bursts) enters every
  * cycle and one row leaves every cycle.
  *
  * @param p the hardware parameters
  */
class RowAssembler(p: SpAttenParams) extends Module {
  private val rowBits = p.maxRowBursts * p.burstBits
  private val w = RowFetcher.width(p)
  val io = IO(new Bundle {
    val in  = Flipped(Decoupled(new FetchedGroup(p)))
    val out = Decoupled(UInt(rowBits.W))
  })

  val parts    = Reg(Vec(p.maxRowBursts, UInt(p.burstBits.W)))
  val idx      = RegInit(0.U(log2Ceil(p.maxRowBursts + 1).W))
  val outValid = RegInit(false.B)
  val outRow   = Reg(UInt(rowBits.W))

  io.out.valid := outValid
  io.out.bits  := outRow
  when(io.out.fire) { outValid := false.B }

  /** Slot `s` of the row with the incoming group placed at `idx`. */
  private def merged(s: Int): UInt = {
    val fromGroup = VecInit((0 until w).map(i => idx + i.U === s.U && i.U < io.in.bits.count))
    Mux(fromGroup.asUInt.orR, Mux1H(fromGroup, io.in.bits.data),
      Mux(s.U < idx, parts(s), 0.U))
  }

  // A final group can enter only when the output register is free (or frees now).
  io.in.ready := !io.in.bits.lastOfRow || !outValid || io.out.ready
  when(io.in.fire) {
    val row = VecInit((0 until p.maxRowBursts).map(merged))
    when(io.in.bits.lastOfRow) {
      outRow   := row.asUInt
      outValid := true.B
      idx      := 0.U
    }.otherwise {
      parts := row
      idx := idx + io.in.bits.count
    }
  }
}
