package spatten

import chisel3._
import chisel3.util._

/** One parsed command: every field of every opcode (unused ones are zero), the query of an
  * ATTEND, the verdict of the range checks and the cycle at which its first word arrived.
  * Field widths are those of the [[Contract]] layout.
  *
  * For TOPK_TOKENS / TOPK_HEADS / READ_IMPORTANCE `n` is the item count and `k` the kept
  * count; for ATTEND `n` is N and `k` is valueTopK. `listBase` is word 5 of an ATTEND and
  * word 1 of the others. An ATTEND_GROUP's per-head fields are in `hd`, one entry a head
  * (a plain ATTEND fills `hd(0)`).
  */
class Request(p: SpAttenParams) extends Bundle {
  private def w(f: Field): UInt = UInt(f.width.W)
  private val a = Contract.attend
  val opcode     = w(a("opcode"))
  val tag        = w(a("tag"))
  val n          = w(a("n"))
  val k          = w(a("valueTopK"))
  val d          = w(a("d"))
  val kMsbBits   = w(a("kMsbBits"))
  val kLsbBits   = w(a("kLsbBits"))
  val vBits      = w(a("vBits"))
  val requant    = Bool()
  val accum      = Bool()
  /** ATTEND_GROUP (else a plain ATTEND: one head, `hd(0)`). */
  val isGroup    = Bool()
  /** Heads of the request (1 for ATTEND). */
  val heads      = w(Contract.attendGroup("heads"))
  /** Per head: ATTEND's headId, valueTopK, scoreShift, requantThreshold, scoreScale and
    * query; ATTEND_GROUP's head sections. */
  val hd         = Vec(p.maxGroupHeads, new HeadRequest(p))
  val kMsbBase   = UInt(p.dramAddrBits.W)
  val kLsbBase   = UInt(p.dramAddrBits.W)
  val vBase      = UInt(p.dramAddrBits.W)
  val listBase   = UInt(p.dramAddrBits.W)
  val clearTok   = Bool()
  val clearHead  = Bool()
  /** A range check failed or the opcode is unknown: answer with opcode 0xFF. */
  val error      = Bool()
  val startCycle = UInt(32.W)
}

/** The per-head fields of an ATTEND or of one head of an ATTEND_GROUP. */
class HeadRequest(p: SpAttenParams) extends Bundle {
  private def w(f: Field): UInt = UInt(f.width.W)
  private val a = Contract.attend
  val headId     = w(a("headId"))
  val k          = w(a("valueTopK"))
  val scoreShift = w(a("scoreShift"))
  val threshold  = w(a("requantThreshold"))
  val scoreScale = w(a("scoreScale"))
  /** ATTEND_GROUP's valueThresh: `k` is a probability threshold, not a count. */
  val vThresh    = Bool()
  val query      = Vec(p.maxHeadDim, SInt(a.tail("query").laneBits.W))
}


/** Parses the command stream (SPEC.md section 5) into [[Request]]s; every field is read
  * through the [[Contract]] layout.
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
  * Word 0 is decoded before the opcode is known, so the layout must place the word-0
  * fields that several commands share (`n`, `k`/`valueTopK`) at one position
  * ([[Contract]] checks this).
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

  private val A  = Contract.attend
  private val AG = Contract.attendGroup
  private val AH = Contract.attendHead
  private val TT = Contract.topkTokens
  private val C  = Contract.clear
  private val query = A.tail("query")

  val req      = Reg(new Request(p))
  val full     = RegInit(false.B)
  val wordIdx  = RegInit(0.U(16.W))
  val badLen   = RegInit(false.B)
  /** ATTEND / ATTEND_GROUP after the header: the head being read and its word (0: the
    * head word of a group section, 1..: query words). */
  val secHead  = RegInit(0.U(8.W))
  val secWord  = RegInit(0.U(8.W))
  io.wordCount := wordIdx

  io.cmd.ready := !full
  io.out.valid := full
  io.out.bits  := req
  when(io.out.fire) { full := false.B }

  private val aBits = p.dramAddrBits
  private val burstLsb = log2Ceil(p.burstBytes)
  /** A 64-bit base field used as a DRAM address: in range and burst-aligned. */
  private def baseOk(b: UInt): Bool =
    (if (aBits < b.getWidth) b(b.getWidth - 1, aBits) === 0.U else true.B) && b(burstLsb - 1, 0) === 0.U
  /** The DRAM address of base field `f` of word `w`. */
  private def addr(f: Field, w: UInt): UInt = f.extract(w)(aBits - 1, 0)

  val w    = io.cmd.bits.data
  val op   = Mux(wordIdx === 0.U, A("opcode").extract(w), req.opcode)
  val dCur = Mux(wordIdx === A("d").word.U, A("d").extract(w), req.d)
  val headsCur = Mux(wordIdx === 0.U, AG("heads").extract(w), req.heads)
  private val queryLanesLog = log2Ceil(query.lanesPerWord)
  val qWords = (dCur +& (query.lanesPerWord - 1).U) >> queryLanesLog
  /** Number of words the opcode's packet must have (TOPK_HEADS, CLEAR and unknown: 1). */
  val expectedWords = MuxLookup(op, 1.U(16.W))(Seq(
    Opcode.attend.U         -> (A.headerWords.U(16.W) + qWords),
    Opcode.attendGroup.U    -> (AG.headerWords.U(16.W) + headsCur * (qWords +& AH.headerWords.U)),
    Opcode.topkTokens.U     -> TT.headerWords.U(16.W),
    Opcode.readImportance.U -> Contract.readImportance.headerWords.U(16.W)))
  val badBase = WireDefault(false.B)

  when(io.cmd.fire) {
    wordIdx := wordIdx + 1.U
    when(wordIdx === 0.U) {
      val fresh = Wire(new Request(p))
      fresh := 0.U.asTypeOf(new Request(p))
      val opcode = A("opcode").extract(w)
      val n      = A("n").extract(w)
      val headId = A("headId").extract(w)
      val group  = opcode === Opcode.attendGroup.U
      val heads  = AG("heads").extract(w)
      fresh.opcode     := opcode
      fresh.tag        := A("tag").extract(w)
      fresh.n          := n
      fresh.k          := A("valueTopK").extract(w)
      fresh.isGroup    := group
      fresh.heads      := Mux(group, heads, 1.U)
      when(!group) {
        fresh.hd(0).headId := headId
        fresh.hd(0).k := A("valueTopK").extract(w)
        fresh.hd(0).vThresh := false.B
      }
      fresh.clearTok   := C("clearTok").flag(w)
      fresh.clearHead  := C("clearHead").flag(w)
      fresh.startCycle := io.cycle
      val known = opcode >= Opcode.attend.U && opcode <= Opcode.attendGroup.U
      fresh.error := !known ||
        (opcode === Opcode.attend.U && (n === 0.U || n > p.maxTokens.U || headId >= p.maxHeads.U)) ||
        (group && (n === 0.U || n > p.maxTokens.U || heads === 0.U || heads > p.maxGroupHeads.U)) ||
        ((opcode === Opcode.topkTokens.U || opcode === Opcode.readImportance.U) && n > p.maxTokens.U) ||
        (opcode === Opcode.topkHeads.U && n > p.maxHeads.U)
      req := fresh
    }.elsewhen(op === Opcode.attend.U || op === Opcode.attendGroup.U) {
      switch(wordIdx) {
        is(A("d").word.U) {
          val d = A("d").extract(w); val msb = A("kMsbBits").extract(w)
          val lsb = A("kLsbBits").extract(w); val vb = A("vBits").extract(w)
          req.d := d; req.kMsbBits := msb; req.kLsbBits := lsb; req.vBits := vb
          req.requant := A("requant").flag(w); req.accum := A("accumImportance").flag(w)
          when(!req.isGroup) {
            req.hd(0).scoreShift := A("scoreShift").extract(w)
            req.hd(0).threshold := A("requantThreshold").extract(w)
            req.hd(0).scoreScale := A("scoreScale").extract(w)
          }
          when(d === 0.U || d > p.maxHeadDim.U || msb === 0.U || msb > 16.U || lsb > 15.U ||
            (msb +& lsb) > 16.U || vb === 0.U || vb > 16.U) { req.error := true.B }
        }
        is(A("kMsbBase").word.U) { req.kMsbBase := addr(A("kMsbBase"), w); badBase := !baseOk(A("kMsbBase").extract(w)) }
        is(A("kLsbBase").word.U) { req.kLsbBase := addr(A("kLsbBase"), w); badBase := !baseOk(A("kLsbBase").extract(w)) }
        is(A("vBase").word.U)    { req.vBase := addr(A("vBase"), w); badBase := !baseOk(A("vBase").extract(w)) }
        is(A("listBase").word.U) { req.listBase := addr(A("listBase"), w); badBase := !baseOk(A("listBase").extract(w)) }
      }
      require(A.headerWords == AG.headerWords, "ATTEND and ATTEND_GROUP headers must have one length")
      when(wordIdx === (A.headerWords - 1).U) {
        secHead := 0.U
        secWord := Mux(req.isGroup, 0.U, AH.headerWords.U) // a plain ATTEND has no head word
      }
      when(wordIdx >= A.headerWords.U) {
        val qIdxBits = log2Ceil(p.maxHeadDim).max(1)
        val hIdxBits = log2Ceil(p.maxGroupHeads).max(1)
        val inRange = secHead < p.maxGroupHeads.U
        val h = AttentionController.low(secHead, hIdxBits)
        when(secWord === 0.U) {
          when(inRange) {
            req.hd(h).headId := AH("headId").extract(w)
            req.hd(h).k := AH("valueTopK").extract(w)
            req.hd(h).scoreShift := AH("scoreShift").extract(w)
            req.hd(h).threshold := AH("requantThreshold").extract(w)
            req.hd(h).scoreScale := AH("scoreScale").extract(w)
            req.hd(h).vThresh := AH("valueThresh").flag(w)
          }
          when(AH("headId").extract(w) >= p.maxHeads.U) { req.error := true.B }
        }.otherwise {
          for (lane <- 0 until query.lanesPerWord) {
            val i = ((secWord - AH.headerWords.U) << queryLanesLog) + lane.U
            when(i < p.maxHeadDim.U && inRange) {
              req.hd(h).query(i(qIdxBits - 1, 0)) := query.lane(w, lane).asSInt
            }
          }
        }
        val qw = (req.d +& (query.lanesPerWord - 1).U) >> queryLanesLog
        when(secWord === qw + (AH.headerWords - 1).U) {
          secWord := 0.U
          secHead := secHead + 1.U
        }.otherwise {
          secWord := secWord + 1.U
        }
      }
      when(badBase) { req.error := true.B }
    }.elsewhen(wordIdx === TT("listBase").word.U) {
      // TOPK_TOKENS and READ_IMPORTANCE: the token list base (same word in both)
      req.listBase := addr(TT("listBase"), w)
      when(!baseOk(TT("listBase").extract(w))) { req.error := true.B }
    }
    when(io.cmd.bits.last) {
      wordIdx := 0.U
      full := true.B
      when(wordIdx + 1.U =/= expectedWords) { req.error := true.B }
    }
  }
}
