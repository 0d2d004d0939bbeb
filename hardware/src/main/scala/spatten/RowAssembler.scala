package spatten

import chisel3._
import chisel3.util._

/** Collects the bursts of one plane row into the row's bytes (burst `b` of the row in bits
  * `[b * burstBits, (b + 1) * burstBits)`; bursts past the row's end read as zero).
  *
  * Double-buffered: the partial row fills one register while the finished row waits in
  * the output register, so rows of one burst stream at one a cycle and longer rows at one
  * burst a cycle.
  *
  * @param p the hardware parameters
  */
class RowAssembler(p: SpAttenParams) extends Module {
  private val rowBits = p.maxRowBursts * p.burstBits
  val io = IO(new Bundle {
    val in  = Flipped(Decoupled(new FetchedBurst(p)))
    val out = Decoupled(UInt(rowBits.W))
  })

  val parts    = Reg(Vec(p.maxRowBursts, UInt(p.burstBits.W)))
  val idx      = RegInit(0.U(log2Ceil(p.maxRowBursts + 1).W))
  val outValid = RegInit(false.B)
  val outRow   = Reg(UInt(rowBits.W))

  io.out.valid := outValid
  io.out.bits  := outRow
  when(io.out.fire) { outValid := false.B }

  // A final burst can enter only when the output register is free (or frees now).
  io.in.ready := !io.in.bits.lastOfRow || !outValid || io.out.ready
  when(io.in.fire) {
    when(io.in.bits.lastOfRow) {
      val row = VecInit((0 until p.maxRowBursts).map { b =>
        Mux(idx === b.U, io.in.bits.data, Mux(b.U < idx, parts(b), 0.U))
      })
      outRow   := row.asUInt
      outValid := true.B
      idx      := 0.U
    }.otherwise {
      parts(idx) := io.in.bits.data
      idx := idx + 1.U
    }
  }
}
