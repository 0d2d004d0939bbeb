package spatten

import chisel3._
import chisel3.util._

/** Cuts the oldest `window` bursts of a [[RowFetcher]]'s reorder ring into whole rows, in
  * order: up to `min(keysPerCycle, maxRows)` complete rows a beat (burst `b` of a row in
  * bits `[b * burstBits, (b + 1) * burstBits)` of its `RowBeat` row; bursts past the row's
  * end read as zero). Combinational.
  *
  * `valid(w)`: burst `w` has arrived; `end(w)`: it ends its row (meaningful when valid).
  * A row is complete when every burst up to its end has arrived (so the rows are taken
  * from the start of the window, in order). `consumed`: bursts the beat on `out` covers
  * (freed when it fires).
  *
  * @param p      the hardware parameters
  * @param window bursts looked at a cycle
  */
class RowAssembler(p: SpAttenParams, window: Int) extends Module {
  private val K     = p.keysPerCycle
  private val cBits = log2Ceil(K + 1)
  private val wBits = log2Ceil(window + 1)
  val io = IO(new Bundle {
    val data     = Input(Vec(window, UInt(p.burstBits.W)))
    val valid    = Input(Vec(window, Bool()))
    val end      = Input(Vec(window, Bool()))
    val maxRows  = Input(UInt(cBits.W))
    val out      = Decoupled(new RowBeat(p))
    val consumed = Output(UInt(wBits.W))
  })

  /** Burst w ends a complete row: it and every burst before it arrived. */
  val prefOk = (0 until window).map(io.valid(_)).scanLeft(true.B)(_ && _).tail
  val endOk  = VecInit((0 until window).map(w => prefOk(w) && io.end(w)))
  /** Rows ending before burst w. */
  private val counts = (0 until window).scanLeft(0.U(wBits.W))((acc, w) => (acc +& endOk(w).asUInt)(wBits - 1, 0))
  val rank   = VecInit(counts.init)
  val complete = counts.last
  val limit  = Mux(io.maxRows === 0.U, 1.U, Mux(io.maxRows > K.U, K.U, io.maxRows))
  val count  = Mux(complete > limit, limit, complete)
  /** Position of the end of row i (valid for i < complete). */
  val endPos = VecInit((0 until K).map(i =>
    Mux1H((0 until window).map(w => endOk(w) && rank(w) === i.U), (0 until window).map(_.U(wBits.W)))))
  val start  = VecInit((0 until K).map(i => if (i == 0) 0.U(wBits.W) else (endPos(i - 1) + 1.U)(wBits - 1, 0)))
  val zeros  = 0.U(p.burstBits.W)
  io.out.valid := complete =/= 0.U
  io.out.bits.count := count
  for (i <- 0 until K) {
    val bursts = (0 until p.maxRowBursts).map { b =>
      val pos = start(i) +& b.U
      val inRow = pos <= endPos(i)
      Mux(inRow, VecInit(io.data :+ zeros)(Mux(pos < window.U, pos, window.U)), zeros)
    }
    io.out.bits.rows(i) := Mux(i.U < count, Cat(bursts.reverse), 0.U)
  }
  io.consumed := Mux(count === 0.U, 0.U, endPos(count - 1.U) + 1.U)
}
