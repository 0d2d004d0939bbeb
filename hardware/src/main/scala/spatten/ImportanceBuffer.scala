package spatten

import chisel3._
import chisel3.util._

/** Token and head importance (SPEC.md sections 1 and 2, steps 4 and 7).
  *
  * Token importance: `maxTokens` unsigned `importanceBits` counters indexed by token id
  * (token ids must be below `maxTokens`: a context is at most `maxTokens` long since the
  * first layers keep every token; the controller rejects larger ids before touching this
  * buffer). Head importance: `maxHeads` unsigned `headImportanceBits` counters. Both add
  * saturating.
  *
  * The token counters are a memory with a combinational read, so an accumulate is a
  * read-modify-write in one cycle and one (id, p) pair is taken every cycle, repeated ids
  * included. A token clear sweeps the memory at one entry a cycle (`maxTokens` cycles,
  * `busy` meanwhile); a head clear takes one cycle.
  *
  * @param p the hardware parameters
  */
class ImportanceBuffer(p: SpAttenParams) extends Module {
  private val idBits = log2Ceil(p.maxTokens).max(1)
  private val hBits  = log2Ceil(p.maxHeads).max(1)
  private val probBits = p.probFracBits + 1
  val io = IO(new Bundle {
    /** Add `prob` to the importance of token `id`. */
    val tokAcc = Flipped(Valid(new Bundle {
      val id   = UInt(idBits.W)
      val prob = UInt(probBits.W)
    }))
    val tokReadId   = Input(UInt(idBits.W))
    val tokReadData = Output(UInt(p.importanceBits.W))
    /** Add `amount` to the importance of head `id`. */
    val headAcc = Flipped(Valid(new Bundle {
      val id     = UInt(hBits.W)
      val amount = UInt(p.headImportanceBits.W)
    }))
    val headReadId   = Input(UInt(hBits.W))
    val headReadData = Output(UInt(p.headImportanceBits.W))
    /** Start clearing the token counters (a sweep) and/or the head counters. */
    val clear = Flipped(Valid(new Bundle {
      val tok  = Bool()
      val head = Bool()
    }))
    /** A token sweep is running. */
    val busy = Output(Bool())
  })

  private val impMax  = ((BigInt(1) << p.importanceBits) - 1).U(p.importanceBits.W)
  private val headMax = ((BigInt(1) << p.headImportanceBits) - 1).U(p.headImportanceBits.W)

  val tokImp = Mem(p.maxTokens, UInt(p.importanceBits.W))
  // The counters are swept to zero after reset as well.
  val sweeping = RegInit(true.B)
  val sweepIdx = RegInit(0.U(idBits.W))
  io.busy := sweeping

  io.tokReadData := tokImp(io.tokReadId)
  when(sweeping) {
    tokImp(sweepIdx) := 0.U
    sweepIdx := sweepIdx + 1.U
    when(sweepIdx === (p.maxTokens - 1).U) { sweeping := false.B }
  }.elsewhen(io.tokAcc.valid) {
    val old = tokImp(io.tokAcc.bits.id)
    val sum = old +& io.tokAcc.bits.prob
    tokImp(io.tokAcc.bits.id) := Mux(sum > impMax, impMax, sum)
  }
  when(io.clear.valid && io.clear.bits.tok) {
    sweeping := true.B
    sweepIdx := 0.U
  }

  val headImp = RegInit(VecInit(Seq.fill(p.maxHeads)(0.U(p.headImportanceBits.W))))
  io.headReadData := headImp(io.headReadId)
  when(io.headAcc.valid) {
    val sum = headImp(io.headAcc.bits.id) +& io.headAcc.bits.amount
    headImp(io.headAcc.bits.id) := Mux(sum > headMax, headMax, sum)
  }
  when(io.clear.valid && io.clear.bits.head) {
    headImp.foreach(_ := 0.U)
  }
}
