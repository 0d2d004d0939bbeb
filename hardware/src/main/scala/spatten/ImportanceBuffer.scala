package spatten

import chisel3._
import chisel3.util._

/** Up to `lanes` token-importance accumulations: add `prob(i)` to the importance of token
  * `id(i)` for `i < count` (`count` in 0..lanes). */
class TokAccBeat(p: SpAttenParams, idBits: Int, lanes: Int) extends Bundle {
  val id    = Vec(lanes, UInt(idBits.W))
  val prob  = Vec(lanes, UInt((p.probFracBits + 1).W))
  val count = UInt(log2Ceil(lanes + 1).W)
}

/** Token and head importance (SPEC.md sections 1 and 2, steps 4 and 7).
  *
  * Token importance: one unsigned `importanceBits` counter per token id, `2^idBits` ids
  * (the SPEC's ids are 16-bit, so `idBits = tokenBits` covers every id; a smaller
  * `idBits` makes ids `>= 2^idBits` out of range, which the controller turns into an
  * error response before touching this buffer). Head importance: `maxHeads` unsigned
  * `headImportanceBits` counters. Both add saturating.
  *
  * The token counters are `B = keysPerCycle` banks, id `t` in bank `t % B` at row
  * `t / B`; each bank is a memory with a combinational read, so it does one
  * read-modify-write a cycle. `tokAcc` takes a beat of up to `B` (id, p) pairs: every
  * cycle, each remaining pair whose bank no earlier remaining pair of the beat uses is
  * applied, and the beat is taken in the cycle its last pairs are applied. Ids in distinct
  * banks (consecutive ids, the common case of a token list) take one cycle a beat; pairs
  * that share a bank, a repeated id included, take one cycle each. Adds of non-negative
  * amounts saturating at one bound commute, so the order is free.
  *
  * CLEAR takes one cycle for any size: every group of 64 rows of a bank has a valid-bit
  * word in a second memory of the bank, and every group a "group valid" flag in a register;
  * a counter reads as zero unless its group flag and its own valid bit are set, a clear
  * drops every group flag, and the first write to a group after a clear rewrites its
  * valid-bit word.
  *
  * @param p      the hardware parameters
  * @param idBits bits of a token id the buffer holds counters for
  */
class ImportanceBuffer(p: SpAttenParams, val idBits: Int = 16) extends Module {
  /** Banks, and beat lanes of `tokAcc`. */
  val banks: Int = p.keysPerCycle
  private val bankBits = log2Ceil(banks)
  require(idBits - bankBits >= 6 && idBits <= p.tokenBits,
    s"idBits must be in ${6 + bankBits}..${p.tokenBits}, got $idBits")
  private val hBits    = log2Ceil(p.maxHeads).max(1)
  private val probBits = p.probFracBits + 1
  private val groupLsb = 6
  private val rowBits  = idBits - bankBits
  private val groups   = 1 << (rowBits - groupLsb)
  val io = IO(new Bundle {
    /** Add `prob(i)` to the importance of token `id(i)`, `i < count`. */
    val tokAcc = Flipped(Decoupled(new TokAccBeat(p, idBits, banks)))
    val tokReadId   = Input(UInt(idBits.W))
    val tokReadData = Output(UInt(p.importanceBits.W))
    /** Add `amount` to the importance of head `id`. */
    val headAcc = Flipped(Valid(new Bundle {
      val id     = UInt(hBits.W)
      val amount = UInt(p.headImportanceBits.W)
    }))
    val headReadId   = Input(UInt(hBits.W))
    val headReadData = Output(UInt(p.headImportanceBits.W))
    /** Zero every token counter and/or every head counter (takes effect next cycle). */
    val clear = Flipped(Valid(new Bundle {
      val tok  = Bool()
      val head = Bool()
    }))
  })

  private val impMax  = ((BigInt(1) << p.importanceBits) - 1).U(p.importanceBits.W)
  private val headMax = ((BigInt(1) << p.headImportanceBits) - 1).U(p.headImportanceBits.W)

  private def bankOf(id: UInt): UInt = if (bankBits == 0) 0.U else id(bankBits - 1, 0)
  private def rowOf(id: UInt): UInt = id(idBits - 1, bankBits)

  /** One bank: counters, valid-bit words, group flags. */
  class Bank {
    val tokImp     = Mem(1 << rowBits, UInt(p.importanceBits.W))
    val validBits  = Mem(groups, UInt((1 << groupLsb).W))
    val groupValid = RegInit(VecInit(Seq.fill(groups)(false.B)))
    /** The valid-bit word of row `r`'s group (zero when the group was cleared). */
    def groupWord(r: UInt): UInt = {
      val g = r(rowBits - 1, groupLsb)
      Mux(groupValid(g), validBits(g), 0.U)
    }
    /** The counter at row `r` as it reads now. */
    def counter(r: UInt): UInt = Mux(groupWord(r)(r(groupLsb - 1, 0)), tokImp(r), 0.U)
    def add(r: UInt, prob: UInt): Unit = {
      val g   = r(rowBits - 1, groupLsb)
      val sum = counter(r) +& prob
      tokImp(r) := Mux(sum > impMax, impMax, sum(p.importanceBits - 1, 0))
      validBits(g) := groupWord(r) | UIntToOH(r(groupLsb - 1, 0), 1 << groupLsb)
      groupValid(g) := true.B
    }
  }
  val bankMems = Seq.fill(banks)(new Bank)

  io.tokReadData := VecInit(bankMems.map(_.counter(rowOf(io.tokReadId))))(bankOf(io.tokReadId))

  // ---- tokAcc: each cycle the first remaining pair of every bank ----
  val done = RegInit(0.U(banks.W)) // lanes of the beat already applied
  private val beat = io.tokAcc.bits
  val remaining = VecInit(Seq.tabulate(banks)(i => i.U < beat.count && !done(i)))
  val take = VecInit(Seq.tabulate(banks)(i =>
    remaining(i) && !(0 until i).map(j => remaining(j) && bankOf(beat.id(j)) === bankOf(beat.id(i))).foldLeft(false.B)(_ || _)))
  io.tokAcc.ready := (remaining.asUInt & ~take.asUInt) === 0.U
  when(io.tokAcc.valid) {
    done := Mux(io.tokAcc.ready, 0.U, done | take.asUInt)
    for ((b, k) <- bankMems.zipWithIndex) {
      val hit = VecInit(Seq.tabulate(banks)(i => take(i) && bankOf(beat.id(i)) === k.U))
      when(hit.asUInt.orR) { b.add(rowOf(Mux1H(hit, beat.id)), Mux1H(hit, beat.prob)) }
    }
  }
  when(io.clear.valid && io.clear.bits.tok) {
    bankMems.foreach(_.groupValid.foreach(_ := false.B))
  }

  val headImp = RegInit(VecInit(Seq.fill(p.maxHeads)(0.U(p.headImportanceBits.W))))
  io.headReadData := headImp(io.headReadId)
  when(io.headAcc.valid) {
    val sum = headImp(io.headAcc.bits.id) +& io.headAcc.bits.amount
    headImp(io.headAcc.bits.id) := Mux(sum > headMax, headMax, sum(p.headImportanceBits - 1, 0))
  }
  when(io.clear.valid && io.clear.bits.head) {
    headImp.foreach(_ := 0.U)
  }
}
