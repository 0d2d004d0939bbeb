package spatten

import chisel3._
import chisel3.util._

/** Command opcodes and the error opcode of the response stream (SPEC.md section 5). */
object Opcode {
  val attend: Int         = 1
  val topkTokens: Int     = 2
  val topkHeads: Int      = 3
  val clear: Int          = 4
  val readImportance: Int = 5
  val error: Int          = 0xff
}

/** One parsed command: every field of every opcode (unused ones are zero), the query of an
  * ATTEND, the verdict of the range checks and the cycle at which its first word arrived.
  *
  * For TOPK_TOKENS / TOPK_HEADS / READ_IMPORTANCE `n` is the item count and `k` the kept
  * count; for ATTEND `n` is N and `k` is valueTopK. `listBase` is word 5 of an ATTEND and
  * word 1 of the others.
  */
class Request(p: SpAttenParams) extends Bundle {
  val opcode     = UInt(8.W)
  val tag        = UInt(16.W)
  val n          = UInt(16.W)
  val k          = UInt(16.W)
  val headId     = UInt(8.W)
  val d          = UInt(8.W)
  val kMsbBits   = UInt(5.W)
  val kLsbBits   = UInt(5.W)
  val vBits      = UInt(5.W)
  val requant    = Bool()
  val accum      = Bool()
  val scoreShift = UInt(6.W)
  val threshold  = UInt(17.W)
  val scoreScale = UInt(16.W)
  val kMsbBase   = UInt(p.dramAddrBits.W)
  val kLsbBase   = UInt(p.dramAddrBits.W)
  val vBase      = UInt(p.dramAddrBits.W)
  val listBase   = UInt(p.dramAddrBits.W)
  val clearTok   = Bool()
  val clearHead  = Bool()
  val query      = Vec(p.maxHeadDim, SInt(p.dataBits.W))
  /** A range check failed or the opcode is unknown: answer with opcode 0xFF. */
  val error      = Bool()
  val startCycle = UInt(32.W)
}

/** Parses the command stream (SPEC.md section 5) into [[Request]]s.
  *
  * Words are consumed until `last`; the packet's first word decides the opcode and the
  * number of words expected. A packet whose fields are out of range, whose opcode is
  * unknown, or whose length differs from the opcode's (ATTEND: `6 + ceil(D/4)` words,
  * TOPK_TOKENS and READ_IMPORTANCE: 2, TOPK_HEADS and CLEAR: 1) is still consumed up to its
  * `last` word and handed on with `error` set, so the response stream carries one answer
  * per packet. Checked ranges: ATTEND `N` in 1..maxTokens, `D` in 1..maxHeadDim,
  * `kMsbBits` in 1..16, `kLsbBits` in 0..15, `kMsbBits + kLsbBits <= 16`, `vBits` in
  * 1..16, `headId < maxHeads`; TOPK_TOKENS / READ_IMPORTANCE `n <= maxTokens`;
  * TOPK_HEADS `n <= maxHeads`; every DRAM base below `2^dramAddrBits` and burst-aligned.
  *
  * One request register: the next packet is accepted only once the current request has
  * been taken on `out`, so parsing overlaps the previous request's execution.
  *
  * @param p the hardware parameters
  */
class RequestIntake(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val cmd   = Flipped(Decoupled(new WordStream(p)))
    val out   = Decoupled(new Request(p))
    /** Free-running cycle counter, sampled at a packet's first word. */
    val cycle = Input(UInt(32.W))
    /** Words of the current packet consumed so far (status). */
    val wordCount = Output(UInt(16.W))
  })

  val req      = Reg(new Request(p))
  val full     = RegInit(false.B)
  val wordIdx  = RegInit(0.U(16.W))
  val badLen   = RegInit(false.B)
  io.wordCount := wordIdx

  io.cmd.ready := !full
  io.out.valid := full
  io.out.bits  := req
  when(io.out.fire) { full := false.B }

  private val aBits = p.dramAddrBits
  private val burstLsb = log2Ceil(p.burstBytes)
  /** A 64-bit command word used as a DRAM base: in range and burst-aligned. */
  private def baseOk(w: UInt): Bool =
    (if (aBits < 64) w(63, aBits) === 0.U else true.B) && w(burstLsb - 1, 0) === 0.U

  val w    = io.cmd.bits.data
  val op   = Mux(wordIdx === 0.U, w(7, 0), req.opcode)
  val dCur = Mux(wordIdx === 1.U, w(7, 0), req.d)
  /** Number of words the opcode's packet must have. */
  val expectedWords = MuxLookup(op, 1.U(16.W))(Seq(
    Opcode.attend.U         -> (6.U(16.W) + ((dCur +& 3.U) >> 2)),
    Opcode.topkTokens.U     -> 2.U(16.W),
    Opcode.readImportance.U -> 2.U(16.W)))
  val badBase = WireDefault(false.B)

  when(io.cmd.fire) {
    wordIdx := wordIdx + 1.U
    when(wordIdx === 0.U) {
      val fresh = Wire(new Request(p))
      fresh := 0.U.asTypeOf(new Request(p))
      fresh.opcode     := w(7, 0)
      fresh.tag        := w(23, 8)
      fresh.n          := w(39, 24)
      fresh.k          := w(55, 40)
      fresh.headId     := w(63, 56)
      fresh.clearTok   := w(24)
      fresh.clearHead  := w(25)
      fresh.startCycle := io.cycle
      val known = w(7, 0) >= Opcode.attend.U && w(7, 0) <= Opcode.readImportance.U
      val n     = w(39, 24)
      fresh.error := !known ||
        (w(7, 0) === Opcode.attend.U && (n === 0.U || n > p.maxTokens.U || w(63, 56) >= p.maxHeads.U)) ||
        ((w(7, 0) === Opcode.topkTokens.U || w(7, 0) === Opcode.readImportance.U) && n > p.maxTokens.U) ||
        (w(7, 0) === Opcode.topkHeads.U && n > p.maxHeads.U)
      req := fresh
    }.elsewhen(op === Opcode.attend.U) {
      switch(wordIdx) {
        is(1.U) {
          val d = w(7, 0); val msb = w(12, 8); val lsb = w(17, 13); val vb = w(22, 18)
          req.d := d; req.kMsbBits := msb; req.kLsbBits := lsb; req.vBits := vb
          req.requant := w(23); req.accum := w(24); req.scoreShift := w(30, 25)
          req.threshold := w(47, 31); req.scoreScale := w(63, 48)
          when(d === 0.U || d > p.maxHeadDim.U || msb === 0.U || msb > 16.U || lsb > 15.U ||
            (msb +& lsb) > 16.U || vb === 0.U || vb > 16.U) { req.error := true.B }
        }
        is(2.U) { req.kMsbBase := w(p.dramAddrBits - 1, 0); badBase := !baseOk(w) }
        is(3.U) { req.kLsbBase := w(p.dramAddrBits - 1, 0); badBase := !baseOk(w) }
        is(4.U) { req.vBase := w(p.dramAddrBits - 1, 0); badBase := !baseOk(w) }
        is(5.U) { req.listBase := w(p.dramAddrBits - 1, 0); badBase := !baseOk(w) }
      }
      when(wordIdx >= 6.U) {
        val qIdxBits = log2Ceil(p.maxHeadDim).max(1)
        for (lane <- 0 until 4) {
          val i = ((wordIdx - 6.U) << 2) + lane.U
          when(i < p.maxHeadDim.U) {
            req.query(i(qIdxBits - 1, 0)) := w(16 * lane + 15, 16 * lane).asSInt
          }
        }
      }
      when(badBase) { req.error := true.B }
    }.elsewhen(wordIdx === 1.U) {
      req.listBase := w(p.dramAddrBits - 1, 0)
      when(!baseOk(w)) { req.error := true.B }
    }
    when(io.cmd.bits.last) {
      wordIdx := 0.U
      full := true.B
      when(wordIdx + 1.U =/= expectedWords) { req.error := true.B }
    }
  }
}
