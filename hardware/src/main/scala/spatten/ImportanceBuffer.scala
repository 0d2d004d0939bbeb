package spatten

import chisel3._
import chisel3.util._

/** Token and head importance (SPEC.md sections 1 and 2, steps 4 and 7).
  *
  * Token importance: one unsigned `importanceBits` counter per token id, `2^idBits` ids
  * (the SPEC's ids are 16-bit, so `idBits = tokenBits` covers every id; a smaller
  * `idBits` makes ids `>= 2^idBits` out of range, which the controller turns into an
  * error response before touching this buffer). Head importance: `maxHeads` unsigned
  * `headImportanceBits` counters. Both add saturating.
  *
  * The token counters are a memory with a combinational read, so an accumulate is a
  * read-modify-write in one cycle and one (id, p) pair is taken every cycle, repeated ids
  * included. CLEAR takes one cycle for any size: every group of 64 ids has a valid-bit
  * word in a second memory, and every group a "group valid" flag in a register; a counter
  * reads as zero unless its group flag and its own valid bit are set, a clear drops every
  * group flag, and the first write to a group after a clear rewrites its valid-bit word.
  *
  * @param p      the hardware parameters
  * @param idBits bits of a token id the buffer holds counters for
  */
class ImportanceBuffer(p: SpAttenParams, val idBits: Int = 16) extends Module {
  require(idBits >= 6 && idBits <= p.tokenBits, s"idBits must be in 6..${p.tokenBits}, got $idBits")
  private val hBits    = log2Ceil(p.maxHeads).max(1)
  private val probBits = p.probFracBits + 1
  private val groupLsb = 6
  private val groups   = 1 << (idBits - groupLsb)
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
    /** Zero every token counter and/or every head counter (takes effect next cycle). */
    val clear = Flipped(Valid(new Bundle {
      val tok  = Bool()
      val head = Bool()
    }))
  })

  private val impMax  = ((BigInt(1) << p.importanceBits) - 1).U(p.importanceBits.W)
  private val headMax = ((BigInt(1) << p.headImportanceBits) - 1).U(p.headImportanceBits.W)

  val tokImp     = Mem(1 << idBits, UInt(p.importanceBits.W))
  val validBits  = Mem(groups, UInt((1 << groupLsb).W))
  val groupValid = RegInit(VecInit(Seq.fill(groups)(false.B)))

  /** The valid-bit word of `id`'s group (zero when the group was cleared). */
  private def groupWord(id: UInt): UInt = {
    val g = id(idBits - 1, groupLsb)
    Mux(groupValid(g), validBits(g), 0.U)
  }
  /** The counter of `id` as it reads now. */
  private def counter(id: UInt): UInt =
    Mux(groupWord(id)(id(groupLsb - 1, 0)), tokImp(id), 0.U)

  io.tokReadData := counter(io.tokReadId)
  when(io.tokAcc.valid) {
    val id  = io.tokAcc.bits.id
    val g   = id(idBits - 1, groupLsb)
    val sum = counter(id) +& io.tokAcc.bits.prob
    tokImp(id) := Mux(sum > impMax, impMax, sum(p.importanceBits - 1, 0))
    validBits(g) := groupWord(id) | UIntToOH(id(groupLsb - 1, 0), 1 << groupLsb)
    groupValid(g) := true.B
  }
  when(io.clear.valid && io.clear.bits.tok) {
    groupValid.foreach(_ := false.B)
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
