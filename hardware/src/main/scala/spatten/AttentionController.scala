package spatten

import chisel3._
import chisel3.util._

/** Controller states, exposed on the status bundle (numbering is part of the testbench's
  * hang diagnosis: see `pyverif/top/`). */
object CtrlState {
  val names: Seq[String] = Seq(
    "idle", "loadQuery", "list", "keys", "summary", "probs", "values", "result",
    "respHeader", "respWord1", "respO", "respIds", "tkScores", "tkCount", "tkIds",
    "readImp", "clear", "respError")
  def apply(name: String): UInt = names.indexOf(name).U(stateBits.W)
  val stateBits: Int = log2Ceil(names.size)
}

/** Per-stage progress of the core, for testbenches that must name a stalled stage. */
class CoreStatus(p: SpAttenParams) extends Bundle {
  /** Controller state, an index into [[CtrlState.names]]. */
  val state      = UInt(CtrlState.stateBits.W)
  /** 1 or 2: the key pass running (ATTEND). */
  val pass       = UInt(2.W)
  val fetch      = new FetcherStatus(p)
  /** Key rows issued to the fetcher, scores into the softmax, probabilities taken and
    * value rows issued in the current request. */
  val keysIssued  = UInt(16.W)
  val scoresDone  = UInt(16.W)
  val probsDone   = UInt(16.W)
  val valuesIssued = UInt(16.W)
  val valuesDone  = UInt(16.W)
  /** Commands finished since reset (wraps). */
  val requestsDone = UInt(32.W)
  val softmaxBusy = Bool()
  val valueTopkPhase = UInt(3.W)
  val rankTopkPhase  = UInt(3.W)
}

/** Runs one command at a time through the datapath (SPEC.md sections 2, 3 and 5).
  *
  * ATTEND: load the query into the [[DotProductArray]]; fetch the token list into the
  * token buffer (a memory of `burstBytes / 2` ids a row, one burst a row); pass 1 streams
  * the MSB rows of the `N` keys through the shared [[RowFetcher]], [[RowAssembler]] and
  * [[PlaneUnpacker]] (`k = msb << kLsbBits`) into the dot-product array, keeping every
  * pass-1 score in a score buffer, and the scores into the [[Softmax]]. At the summary the
  * requantization decision is taken (`requant`, `kLsbBits > 0`, `pmax < threshold`); if
  * taken the pass is discarded and pass 2 streams only the LSB rows (unsigned) through the
  * same array: since `(msb << L) | lsb = (msb << L) + lsb`, the full-precision score is
  * the pass-1 score plus `q . lsb`, so the MSB plane is never fetched twice. The final
  * probabilities go to the probability buffer, the importance accumulator (`accum`) and,
  * when `M < N`, the 17-bit value [[TopKEngine]]; when `M = N` the selection is every
  * position and the engine is bypassed. The selected positions (ascending) turn into V-row
  * fetches of their token ids and the rows with their `p_j` into the [[ValueAccumulator]];
  * its result updates the head importance and the response is written: header, pmax and
  * cycles, `D` outputs, the selected ids.
  *
  * TOPK_TOKENS / TOPK_HEADS rank token (after a token-list fetch) or head importance in a
  * 48-bit [[TopKEngine]]; READ_IMPORTANCE fetches the list and returns `imp[tok_j]`;
  * CLEAR sweeps the token importance and/or zeroes the head importance.
  *
  * Token ids index the importance buffer; when it is built for fewer than 16 id bits, a
  * command that would use importance (ATTEND with `accumImportance`, TOPK_TOKENS,
  * READ_IMPORTANCE) and finds an id out of its range in its list answers with an error
  * response (opcode 0xFF) before changing any state (with the default 16 bits, never).
  *
  * Every inner stream is ready/valid; the phases of one command run one after the other
  * (only the key and value fetches, unpacking, dot products and accumulation inside a
  * phase overlap, at one burst a cycle).
  *
  * @param p the hardware parameters
  */
class AttentionController(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val req    = Flipped(Decoupled(new Request(p)))
    val words  = Decoupled(new WordStream(p))
    val ids    = Decoupled(new PackedId)
    val selIds = Output(Bool())
    val dram   = Vec(p.numChannels, new DramReadPort(p))
    val cycle  = Input(UInt(32.W))
    val status = Output(new CoreStatus(p))
  })

  private val idsPerBurst = p.burstBytes / 2
  private val listRows    = (p.maxTokens + idsPerBurst - 1) / idsPerBurst
  private val idxBits     = log2Ceil(p.maxTokens).max(1)
  private val cntBits     = p.tokenIdxBits
  private val scoreBits   = DotProductArray.scoreBits(p)
  private val pBits       = p.probFracBits + 1
  private val laneBits    = log2Ceil(idsPerBurst)

  // ---------------- units ----------------
  val fetcher   = Module(new RowFetcher(p))
  val assembler = Module(new RowAssembler(p))
  val unpacker  = Module(new PlaneUnpacker(p))
  val dot       = Module(new DotProductArray(p))
  val softmax   = Module(new Softmax(p))
  val valueTopk = Module(new TopKEngine(p, pBits, p.maxTokens, p.topkParallelism))
  val rankTopk  = Module(new TopKEngine(p, p.headImportanceBits, p.maxTokens.max(p.maxHeads), p.topkParallelism))
  val valueAcc  = Module(new ValueAccumulator(p))
  val imp       = Module(new ImportanceBuffer(p))
  fetcher.io.dram <> io.dram

  // ---------------- request and state ----------------
  val state = RegInit(CtrlState("idle"))
  def in(name: String): Bool = state === CtrlState(name)
  def goto(name: String): Unit = state := CtrlState(name)

  val req  = Reg(new Request(p))
  val pass = RegInit(1.U(2.W))
  val requantized = Reg(Bool())
  val pmax = Reg(UInt(pBits.W))
  val badId = Reg(Bool())
  val n = req.n(cntBits - 1, 0)
  /** M: the number of selected values. */
  val m = Mux(req.k === 0.U || req.k >= req.n, req.n, req.k)(cntBits - 1, 0)
  val pruneValues = m =/= n

  val requestsDone = RegInit(0.U(32.W))

  // ---------------- buffers ----------------
  private val listRowBits = log2Ceil(listRows).max(1)
  val tokBuf = Mem(1 << listRowBits, Vec(idsPerBurst, UInt(p.tokenBits.W)))
  /** The low `w` bits of `x` (zero-extended when narrower). */
  def low(x: UInt, w: Int): UInt = x.pad(w)(w - 1, 0)
  /** Token id at position `j` of the current list. */
  def tok(j: UInt): UInt = {
    val jj = j.pad(listRowBits + laneBits)
    val row = tokBuf(low(jj >> laneBits, listRowBits))
    if (laneBits == 0) row(0) else row(jj(laneBits - 1, 0))
  }
  def ix(j: UInt): UInt = low(j, idxBits)
  val s1Buf  = Mem(p.maxTokens, SInt(scoreBits.W))
  val pBuf   = Mem(p.maxTokens, UInt(pBits.W))
  val selBuf = Mem(p.maxTokens, UInt(p.tokenBits.W))
  val outO   = Reg(Vec(p.maxHeadDim, SInt(64.W)))

  // counters of the current phase
  val issueCnt = RegInit(0.U(cntBits.W)) // rows / scores / positions issued
  val doneCnt  = RegInit(0.U(cntBits.W)) // rows / scores received
  val aux      = RegInit(0.U(cntBits.W)) // third counter (scores into softmax, ids sent)
  val cmdSent  = RegInit(false.B)

  // ---------------- defaults ----------------
  io.req.ready := false.B
  io.words.valid := false.B
  io.words.bits.data := 0.U
  io.words.bits.last := false.B
  io.ids.valid := false.B
  io.ids.bits.id := 0.U
  io.ids.bits.last := false.B
  io.selIds := in("respIds") || in("tkIds")

  fetcher.io.rows.valid := false.B
  fetcher.io.rows.bits := 0.U
  assembler.io.in <> fetcher.io.groups
  assembler.io.out.ready := false.B
  unpacker.io.in.valid := false.B
  unpacker.io.in.bits.row := assembler.io.out.bits
  unpacker.io.in.bits.bits := 0.U
  unpacker.io.in.bits.isSigned := true.B
  unpacker.io.out.ready := false.B
  dot.io.query.valid := false.B
  dot.io.query.bits.q := req.query
  dot.io.query.bits.d := low(req.d, p.dimBits) // D <= maxHeadDim: checked at the intake
  dot.io.keys.valid := false.B
  dot.io.keys.bits.k := unpacker.io.out.bits
  dot.io.keys.bits.last := false.B
  dot.io.scores.ready := false.B
  softmax.io.cfg.scoreScale := req.scoreScale
  softmax.io.cfg.scoreShift := req.scoreShift
  softmax.io.scores.valid := false.B
  softmax.io.scores.bits.s := dot.io.scores.bits.s
  softmax.io.scores.bits.last := false.B
  softmax.io.summary.ready := false.B
  softmax.io.probs.ready := false.B
  softmax.io.discard := false.B
  valueTopk.io.cmd.valid := false.B
  valueTopk.io.cmd.bits := m
  valueTopk.io.in.valid := false.B
  valueTopk.io.in.bits.score := softmax.io.probs.bits.p
  valueTopk.io.in.bits.last := softmax.io.probs.bits.last
  valueTopk.io.count.ready := true.B
  valueTopk.io.out.ready := false.B
  rankTopk.io.cmd.valid := false.B
  rankTopk.io.cmd.bits := req.k
  rankTopk.io.in.valid := false.B
  rankTopk.io.in.bits.score := 0.U
  rankTopk.io.in.bits.last := false.B
  rankTopk.io.count.ready := false.B
  rankTopk.io.out.ready := false.B
  valueAcc.io.d := low(req.d, p.dimBits)
  valueAcc.io.rows.valid := false.B
  valueAcc.io.rows.bits.v := unpacker.io.out.bits
  valueAcc.io.rows.bits.p := 0.U
  valueAcc.io.rows.bits.last := false.B
  valueAcc.io.rows.bits.empty := false.B
  valueAcc.io.result.ready := false.B
  imp.io.tokAcc.valid := false.B
  imp.io.tokAcc.bits.id := 0.U
  imp.io.tokAcc.bits.prob := 0.U
  imp.io.tokReadId := 0.U
  imp.io.headAcc.valid := false.B
  imp.io.headAcc.bits.id := low(req.headId, log2Ceil(p.maxHeads).max(1))
  imp.io.headAcc.bits.amount := 0.U
  imp.io.headReadId := 0.U
  imp.io.clear.valid := false.B
  imp.io.clear.bits.tok := req.clearTok
  imp.io.clear.bits.head := req.clearHead

  // ---------------- fetch geometry ----------------
  private val burstBitsLog = log2Ceil(8 * p.burstBytes)
  /** Bursts of a plane row: ceil(D * b / (8 * burstBytes)). */
  def rowBursts(b: UInt): UInt = ((req.d * b) +& ((8 * p.burstBytes) - 1).U) >> burstBitsLog
  val listBursts = ((req.n +& (p.burstBytes / 2 - 1).U) >> laneBits)(cntBits, 0)
  val keyBits = Mux(pass === 1.U, req.kMsbBits, req.kLsbBits)
  fetcher.io.base := req.listBase
  fetcher.io.rowBursts := 1.U
  when(in("keys")) {
    fetcher.io.base := Mux(pass === 1.U, req.kMsbBase, req.kLsbBase)
    fetcher.io.rowBursts := low(rowBursts(keyBits), fetcher.io.rowBursts.getWidth)
  }.elsewhen(in("values") || in("probs")) {
    fetcher.io.base := req.vBase
    fetcher.io.rowBursts := low(rowBursts(req.vBits), fetcher.io.rowBursts.getWidth)
  }

  /** Does this command use token importance (and so need ids below maxTokens)? */
  val usesImportance = req.opcode =/= Opcode.attend.U || req.accum

  // ---------------- idle: take a request ----------------
  when(in("idle")) {
    io.req.ready := true.B
    when(io.req.fire) {
      val r = io.req.bits
      req := r
      pass := 1.U
      requantized := false.B
      badId := false.B
      issueCnt := 0.U
      doneCnt := 0.U
      aux := 0.U
      cmdSent := false.B
      when(r.error) {
        goto("respError")
      }.otherwise {
        switch(r.opcode) {
          is(Opcode.attend.U)         { goto("loadQuery") }
          is(Opcode.topkTokens.U)     { goto("list") }
          is(Opcode.topkHeads.U)      { goto("tkScores") }
          is(Opcode.clear.U)          { goto("clear") }
          is(Opcode.readImportance.U) { goto("list") }
        }
      }
    }
  }

  when(in("loadQuery")) {
    dot.io.query.valid := true.B
    when(dot.io.query.fire) { goto("list") }
  }

  // ---------------- token list fetch ----------------
  when(in("list")) {
    fetcher.io.rows.valid := issueCnt < listBursts
    fetcher.io.rows.bits := issueCnt
    when(fetcher.io.rows.fire) { issueCnt := issueCnt + 1.U }
    assembler.io.out.ready := true.B
    when(assembler.io.out.fire) {
      val ids = VecInit(Seq.tabulate(idsPerBurst)(i => assembler.io.out.bits(16 * i + 15, 16 * i)))
      tokBuf(low(doneCnt, listRowBits)) := ids
      for (i <- 0 until idsPerBurst) {
        val j = (doneCnt << laneBits) + i.U
        when(j < req.n && (ids(i) >> imp.idBits).orR && usesImportance) { badId := true.B }
      }
      doneCnt := doneCnt + 1.U
    }
    val allIn = doneCnt === listBursts
    when(allIn) {
      issueCnt := 0.U
      doneCnt := 0.U
      when(badId) {
        goto("respError")
      }.elsewhen(req.opcode === Opcode.attend.U) {
        goto("keys")
      }.elsewhen(req.opcode === Opcode.topkTokens.U) {
        goto("tkScores")
      }.otherwise {
        goto("respHeader")
      }
    }
  }

  // ---------------- key passes ----------------
  when(in("keys")) {
    // issue: the token ids of positions 0..N-1
    fetcher.io.rows.valid := issueCnt < n
    fetcher.io.rows.bits := tok(issueCnt)
    when(fetcher.io.rows.fire) { issueCnt := issueCnt + 1.U }
    // rows -> unpack
    unpacker.io.in.valid := assembler.io.out.valid
    assembler.io.out.ready := unpacker.io.in.ready
    unpacker.io.in.bits.bits := keyBits
    unpacker.io.in.bits.isSigned := pass === 1.U
    // elements -> dot (pass 1: msb << kLsbBits; pass 2: the unsigned lsb as is)
    dot.io.keys.valid := unpacker.io.out.valid
    unpacker.io.out.ready := dot.io.keys.ready
    dot.io.keys.bits.k := Mux(pass === 1.U,
      VecInit(unpacker.io.out.bits.map(e => PlaneUnpacker.combineKey(e, 0.S, req.kLsbBits, false.B))),
      unpacker.io.out.bits)
    dot.io.keys.bits.last := doneCnt === n - 1.U
    when(dot.io.keys.fire) { doneCnt := doneCnt + 1.U }
    // scores -> softmax (pass 2 adds the pass-1 score)
    val s1 = s1Buf(ix(aux))
    softmax.io.scores.valid := dot.io.scores.valid
    dot.io.scores.ready := softmax.io.scores.ready
    softmax.io.scores.bits.s := Mux(pass === 1.U, dot.io.scores.bits.s, s1 + dot.io.scores.bits.s)
    softmax.io.scores.bits.last := dot.io.scores.bits.last
    when(softmax.io.scores.fire) {
      when(pass === 1.U) { s1Buf(ix(aux)) := dot.io.scores.bits.s }
      aux := aux + 1.U
      when(softmax.io.scores.bits.last) { goto("summary") }
    }
  }

  when(in("summary")) {
    val pm = softmax.io.summary.bits.pmax
    val again = pass === 1.U && req.requant && req.kLsbBits =/= 0.U && pm < req.threshold
    when(softmax.io.summary.valid) {
      when(again) {
        softmax.io.discard := true.B
        pass := 2.U
        requantized := true.B
        issueCnt := 0.U
        doneCnt := 0.U
        aux := 0.U
        goto("keys")
      }.otherwise {
        softmax.io.summary.ready := true.B
        pmax := pm
        issueCnt := 0.U
        doneCnt := 0.U
        aux := 0.U
        goto("probs")
      }
    }
  }

  // ---------------- probabilities, value fetch and P x V ----------------
  // With M < N the probabilities go to the value top-k engine and the V rows of its
  // selection are fetched in state values. With M = N every position is selected, so each
  // p_j issues its V row at once and the value fetch overlaps the probability stream.
  /** p of the V rows in flight, in order. */
  val inflight = Module(new Queue(UInt(pBits.W), p.numChannels * p.maxInflight + 4))
  inflight.io.enq.valid := false.B
  inflight.io.enq.bits := 0.U
  inflight.io.deq.ready := false.B
  /** A value row position to issue: valid, position, p. */
  val posValid = WireDefault(false.B)
  val pos      = WireDefault(0.U(cntBits.W))
  val posP     = WireDefault(0.U(pBits.W))
  val t = tok(pos)
  val valuePhase = in("probs") || in("values")
  when(valuePhase) {
    fetcher.io.rows.valid := posValid && inflight.io.enq.ready
    fetcher.io.rows.bits := t
    inflight.io.enq.valid := posValid && fetcher.io.rows.ready
    inflight.io.enq.bits := posP
  }
  val posTaken = valuePhase && fetcher.io.rows.fire

  when(in("probs")) {
    valueTopk.io.cmd.valid := pruneValues && !cmdSent
    when(valueTopk.io.cmd.fire) { cmdSent := true.B }
    val j = softmax.io.probs.bits.idx
    when(pruneValues) {
      softmax.io.probs.ready := cmdSent && valueTopk.io.in.ready
      valueTopk.io.in.valid := cmdSent && softmax.io.probs.valid
    }.otherwise {
      posValid := softmax.io.probs.valid
      pos := j
      posP := softmax.io.probs.bits.p
      softmax.io.probs.ready := fetcher.io.rows.ready && inflight.io.enq.ready
    }
    when(softmax.io.probs.fire) {
      pBuf(ix(j)) := softmax.io.probs.bits.p
      imp.io.tokAcc.valid := req.accum
      imp.io.tokAcc.bits.id := low(tok(j), imp.idBits)
      imp.io.tokAcc.bits.prob := softmax.io.probs.bits.p
      aux := aux + 1.U
      when(softmax.io.probs.bits.last) {
        aux := 0.U
        goto("values")
      }
    }
  }
  when(in("values") && pruneValues) {
    // the engine's selected positions, ascending
    posValid := valueTopk.io.out.valid
    pos := valueTopk.io.out.bits.position.pad(cntBits)
    posP := pBuf(ix(pos))
    valueTopk.io.out.ready := fetcher.io.rows.ready && inflight.io.enq.ready
  }
  when(posTaken) {
    selBuf(ix(issueCnt)) := t
    issueCnt := issueCnt + 1.U
  }
  when(in("values") || (in("probs") && !pruneValues)) {
    // rows -> unpack -> accumulator
    unpacker.io.in.valid := assembler.io.out.valid
    assembler.io.out.ready := unpacker.io.in.ready
    unpacker.io.in.bits.bits := req.vBits
    unpacker.io.in.bits.isSigned := true.B
    valueAcc.io.rows.valid := unpacker.io.out.valid && inflight.io.deq.valid
    unpacker.io.out.ready := valueAcc.io.rows.ready && inflight.io.deq.valid
    inflight.io.deq.ready := valueAcc.io.rows.ready && unpacker.io.out.valid
    valueAcc.io.rows.bits.p := inflight.io.deq.bits
    valueAcc.io.rows.bits.last := doneCnt === m - 1.U
    when(valueAcc.io.rows.fire) {
      doneCnt := doneCnt + 1.U
      when(valueAcc.io.rows.bits.last) { goto("result") }
    }
  }

  when(in("result")) {
    valueAcc.io.result.ready := true.B
    when(valueAcc.io.result.fire) {
      outO := valueAcc.io.result.bits.o
      val hMax = ((BigInt(1) << p.headImportanceBits) - 1).U
      val amount = valueAcc.io.result.bits.headImp
      imp.io.headAcc.valid := req.accum
      imp.io.headAcc.bits.amount := Mux(amount > hMax, hMax, amount)(p.headImportanceBits - 1, 0)
      goto("respHeader")
    }
  }

  // ---------------- ranking (TOPK_TOKENS, TOPK_HEADS) ----------------
  when(in("tkScores")) {
    val isTok = req.opcode === Opcode.topkTokens.U
    when(req.n === 0.U) {
      goto("respHeader") // nothing to rank: count 0
    }.otherwise {
      rankTopk.io.cmd.valid := !cmdSent
      when(rankTopk.io.cmd.fire) { cmdSent := true.B }
      imp.io.tokReadId := low(tok(issueCnt), imp.idBits)
      imp.io.headReadId := low(issueCnt, log2Ceil(p.maxHeads).max(1))
      rankTopk.io.in.valid := cmdSent && issueCnt < n
      rankTopk.io.in.bits.score := Mux(isTok, imp.io.tokReadData, imp.io.headReadData)
      rankTopk.io.in.bits.last := issueCnt === n - 1.U
      when(rankTopk.io.in.fire) {
        issueCnt := issueCnt + 1.U
        when(rankTopk.io.in.bits.last) { goto("tkCount") }
      }
    }
  }
  val rankCount = Reg(UInt(cntBits.W))
  when(in("tkCount")) {
    rankTopk.io.count.ready := true.B
    when(rankTopk.io.count.fire) {
      rankCount := rankTopk.io.count.bits
      goto("respHeader")
    }
  }

  // ---------------- CLEAR ----------------
  when(in("clear")) {
    imp.io.clear.valid := true.B
    goto("respHeader")
  }

  // ---------------- responses ----------------
  val finish = WireDefault(false.B)
  when(in("respError")) {
    io.words.valid := true.B
    io.words.bits.data := Cat(req.opcode, req.tag, Opcode.error.U(8.W))
    io.words.bits.last := true.B
    when(io.words.fire) { finish := true.B }
  }

  val isAttend = req.opcode === Opcode.attend.U
  val isRank   = req.opcode === Opcode.topkTokens.U || req.opcode === Opcode.topkHeads.U
  val isRead   = req.opcode === Opcode.readImportance.U
  val rankKept = Mux(req.n === 0.U, 0.U, rankCount)
  when(in("respHeader")) {
    io.words.valid := true.B
    val count = Mux(isAttend, m, Mux(isRank, rankKept, Mux(isRead, n, 0.U)))
    io.words.bits.data := Cat(
      Mux(isAttend, req.n, 0.U(16.W)),
      0.U(7.W), isAttend && requantized,
      count.pad(16),
      req.tag, req.opcode)
    // a header is the whole packet for CLEAR and for empty rankings / reads
    val alone = !isAttend && count === 0.U
    io.words.bits.last := alone
    when(io.words.fire) {
      aux := 0.U
      when(alone) {
        finish := true.B
      }.elsewhen(isAttend) {
        goto("respWord1")
      }.elsewhen(isRank) {
        goto("tkIds")
      }.otherwise {
        goto("readImp")
      }
    }
  }
  when(in("respWord1")) {
    io.words.valid := true.B
    io.words.bits.data := Cat(io.cycle - req.startCycle, 0.U(15.W), pmax)
    when(io.words.fire) { goto("respO") }
  }
  when(in("respO")) {
    io.words.valid := true.B
    io.words.bits.data := outO(aux(log2Ceil(p.maxHeadDim).max(1) - 1, 0)).asUInt
    when(io.words.fire) {
      aux := aux + 1.U
      when(aux === req.d - 1.U) {
        aux := 0.U
        goto("respIds")
      }
    }
  }
  when(in("respIds")) {
    io.ids.valid := true.B
    io.ids.bits.id := selBuf(ix(aux))
    io.ids.bits.last := aux === m - 1.U
    when(io.ids.fire) {
      aux := aux + 1.U
      when(io.ids.bits.last) { finish := true.B }
    }
  }
  when(in("tkIds")) {
    val isTok = req.opcode === Opcode.topkTokens.U
    io.ids.valid := rankTopk.io.out.valid
    rankTopk.io.out.ready := io.ids.ready
    val pos = rankTopk.io.out.bits.position
    io.ids.bits.id := Mux(isTok, tok(pos), pos.pad(16))
    io.ids.bits.last := rankTopk.io.out.bits.last
    when(io.ids.fire && io.ids.bits.last) { finish := true.B }
  }
  when(in("readImp")) {
    imp.io.tokReadId := low(tok(aux), imp.idBits)
    io.words.valid := true.B
    io.words.bits.data := imp.io.tokReadData
    io.words.bits.last := aux === n - 1.U
    when(io.words.fire) {
      aux := aux + 1.U
      when(io.words.bits.last) { finish := true.B }
    }
  }
  when(finish) {
    goto("idle")
    requestsDone := requestsDone + 1.U
  }

  // ---------------- status ----------------
  io.status.state := state
  io.status.pass := pass
  io.status.fetch := fetcher.io.status
  io.status.keysIssued := Mux(in("keys"), issueCnt, 0.U)
  io.status.scoresDone := Mux(in("keys"), aux, 0.U)
  io.status.probsDone := Mux(in("probs"), aux, 0.U)
  io.status.valuesIssued := Mux(in("values") || in("probs"), issueCnt, 0.U)
  io.status.valuesDone := Mux(in("values") || in("probs"), doneCnt, 0.U)
  io.status.requestsDone := requestsDone
  io.status.softmaxBusy := softmax.io.busy
  io.status.valueTopkPhase := valueTopk.io.status.phase
  io.status.rankTopkPhase := rankTopk.io.status.phase
}
