package spatten

import chisel3._
import chisel3.util._

/** Controller states, exposed on the status bundle (numbering is part of the testbench's
  * hang diagnosis: see `pyverif/top/`). */
/** Controller states, exposed on the status bundle (the numbering is part of the
  * testbench's hang diagnosis and of `run.py`'s per-stage report: the elaborator writes the
  * names to `ctrl_states.json`).
  *
  * The front end ([[CtrlState]]) takes commands, fetches token lists and keys, computes
  * the scores and the softmax summary, decides requantization and hands each ATTEND to the
  * back end ([[BackState]]), which streams the probabilities, selects, fetches and
  * accumulates the values and writes the response. The other commands run in the front end
  * alone, after the back end has drained.
  */
object CtrlState {
  val names: Seq[String] = Seq(
    "idle", "waitSlot", "loadQuery", "list", "keys", "summary", "handoff", "drain",
    "tkScores", "tkCount", "tkIds", "readImp", "clear", "respHeader", "respError")
  def apply(name: String): UInt = {
    require(names.contains(name), s"unknown controller state $name")
    names.indexOf(name).U(stateBits.W)
  }
  val stateBits: Int = log2Ceil(names.size)
}

/** Back-end states: one ATTEND at a time, from its probabilities to its response. */
object BackState {
  val names: Seq[String] = Seq(
    "idle", "probs", "values", "result", "respHeader", "respWord1", "respO", "respIds")
  def apply(name: String): UInt = {
    require(names.contains(name), s"unknown back-end state $name")
    names.indexOf(name).U(stateBits.W)
  }
  val stateBits: Int = log2Ceil(names.size)
}

/** Per-stage progress of the core, for testbenches that must name a stalled stage. */
class CoreStatus(p: SpAttenParams) extends Bundle {
  /** Front-end state, an index into [[CtrlState.names]]. */
  val state      = UInt(CtrlState.stateBits.W)
  /** Back-end state, an index into [[BackState.names]]. */
  val backState  = UInt(BackState.stateBits.W)
  /** 1 or 2: the key pass running (ATTEND). */
  val pass       = UInt(2.W)
  /** The key fetcher (token lists and keys) and the value fetcher. */
  val fetch      = new FetcherStatus(p)
  val valueFetch = new FetcherStatus(p)
  /** Key rows issued to the fetcher and scores into the softmax of the front end's
    * request; probabilities taken and value rows issued and accumulated in the back end's. */
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

/** Runs the commands through the datapath (SPEC.md sections 2, 3 and 5) as a two-stage
  * pipeline, so that one ATTEND's keys are fetched while the previous one's values are.
  *
  * Front end, ATTEND: wait for a free slot (two slots, each a token-list bank and a softmax
  * score bank); load the query into the [[DotProductArray]]; fetch the token list into the
  * slot's bank (`burstBytes / 2` ids a row, one burst a row); pass 1 streams the MSB rows
  * of the `N` keys through the key [[RowFetcher]], [[RowAssembler]] and [[PlaneUnpacker]]
  * (`k = msb << kLsbBits`) into the dot-product array, keeping every pass-1 score in a
  * score buffer, and the scores into the [[Softmax]] (the slot's bank). At the summary the
  * requantization decision is taken (`requant`, `kLsbBits > 0`, `pmax < threshold`); if
  * taken pass 2 streams only the LSB rows (unsigned) through the same array: since
  * `(msb << L) | lsb = (msb << L) + lsb`, the full-precision score is the pass-1 score
  * plus `q . lsb`, so the MSB plane is never fetched twice. The request, its slot and its
  * summary go to the back end.
  *
  * Back end, ATTEND: stream the probabilities of its slot's softmax bank into the
  * probability buffer, the importance accumulator (`accum`) and, when `M < N`, the 17-bit
  * value [[TopKEngine]]; when `M = N` the selection is every position and each `p_j`
  * issues its V row at once. The selected positions (ascending) turn into V-row fetches
  * of their token ids on the value [[RowFetcher]] (its own [[RowAssembler]] and
  * [[PlaneUnpacker]]) and the rows with their `p_j` into the [[ValueAccumulator]]; its
  * result updates the head importance and the response is written: header, pmax and
  * cycles, `D` outputs, the selected ids (four to a word, one word a cycle). The slot is
  * then free. Both fetchers share the channels through a [[DramArbiter]].
  *
  * Front end, other commands (in order with the ATTENDs: each waits until the back end
  * has answered every earlier ATTEND): TOPK_TOKENS / TOPK_HEADS rank token (after a
  * token-list fetch) or head importance in a 48-bit [[TopKEngine]]; READ_IMPORTANCE
  * fetches the list and returns `imp[tok_j]`; CLEAR sweeps the token importance and/or
  * zeroes the head importance. Error responses also wait for the back end.
  *
  * Token ids index the importance buffer; when it is built for fewer than 16 id bits, a
  * command that would use importance (ATTEND with `accumImportance`, TOPK_TOKENS,
  * READ_IMPORTANCE) and finds an id out of its range in its list answers with an error
  * response (opcode 0xFF) before changing any state (with the default 16 bits, never).
  *
  * Every inner stream is ready/valid.
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
  private val idWords     = (p.maxTokens + 3) / 4
  private val idWordBits  = log2Ceil(idWords).max(1)

  // ---------------- units ----------------
  val keyFetch   = Module(new RowFetcher(p))
  val keyAsm     = Module(new RowAssembler(p))
  val keyUnpack  = Module(new PlaneUnpacker(p))
  val valFetch   = Module(new RowFetcher(p))
  val valAsm     = Module(new RowAssembler(p))
  val valUnpack  = Module(new PlaneUnpacker(p))
  val arbiter    = Module(new DramArbiter(p, 2))
  val dot       = Module(new DotProductArray(p))
  val softmax   = Module(new Softmax(p))
  val valueTopk = Module(new TopKEngine(p, pBits, p.maxTokens, p.topkParallelism))
  val rankTopk  = Module(new TopKEngine(p, p.headImportanceBits, p.maxTokens.max(p.maxHeads), p.topkParallelism))
  val valueAcc  = Module(new ValueAccumulator(p))
  val imp       = Module(new ImportanceBuffer(p))
  arbiter.io.clients(0) <> keyFetch.io.dram
  arbiter.io.clients(1) <> valFetch.io.dram
  io.dram <> arbiter.io.dram
  keyAsm.io.in <> keyFetch.io.groups
  valAsm.io.in <> valFetch.io.groups

  /** The low `w` bits of `x` (zero-extended when narrower). */
  def low(x: UInt, w: Int): UInt = x.pad(w)(w - 1, 0)
  def ix(j: UInt): UInt = low(j, idxBits)
  private val burstBitsLog = log2Ceil(8 * p.burstBytes)
  /** Bursts of a plane row: ceil(D * b / (8 * burstBytes)). */
  def rowBursts(d: UInt, b: UInt): UInt =
    low(((d * b) +& ((8 * p.burstBytes) - 1).U) >> burstBitsLog, RowFetcher.rowBurstBits(p))
  def fetchRow(index: UInt, base: UInt, bursts: UInt): FetchRow = {
    val r = Wire(new FetchRow(p))
    r.index := index
    r.base := base
    r.rowBursts := bursts
    r
  }

  // ---------------- slots: token-list bank + softmax bank, one per ATTEND in flight ----------------
  val slotBusy = RegInit(VecInit(Seq.fill(2)(false.B)))
  private val listRowBits = log2Ceil(listRows).max(1)
  val tokBuf = Mem(2 << listRowBits, Vec(idsPerBurst, UInt(p.tokenBits.W)))
  /** Token id at position `j` of the list in bank `slot`. */
  def tok(slot: UInt, j: UInt): UInt = {
    val jj = j.pad(listRowBits + laneBits)
    val row = tokBuf(Cat(slot, low(jj >> laneBits, listRowBits)))
    if (laneBits == 0) row(0) else row(jj(laneBits - 1, 0))
  }

  /** What the front end hands to the back end for one ATTEND. */
  class Job extends Bundle {
    val slot        = UInt(1.W)
    val tag         = UInt(16.W)
    val n           = UInt(cntBits.W)
    val m           = UInt(cntBits.W)
    val headId      = UInt(8.W)
    val d           = UInt(8.W)
    val vBits       = UInt(5.W)
    val accum       = Bool()
    val vBase       = UInt(p.dramAddrBits.W)
    val startCycle  = UInt(32.W)
    val requantized = Bool()
    val pmax        = UInt(pBits.W)
    val recip       = UInt(Softmax.recipBits(p).W)
  }
  val jobs = Module(new Queue(new Job, 2))

  val requestsDone = RegInit(0.U(32.W))
  val frontFinish = WireDefault(false.B)
  val backFinish  = WireDefault(false.B)
  when(frontFinish || backFinish) { requestsDone := requestsDone + 1.U }
  assert(!(frontFinish && backFinish), "front and back end answered in the same cycle")

  // ======================================================================================
  // Front end
  // ======================================================================================
  val state = RegInit(CtrlState("idle"))
  def in(name: String): Bool = state === CtrlState(name)
  def goto(name: String): Unit = state := CtrlState(name)

  val req  = Reg(new Request(p))
  val slot = RegInit(0.U(1.W)) // the slot the front end fills next
  val pass = RegInit(1.U(2.W))
  val requantized = Reg(Bool())
  val badId = Reg(Bool())
  val n = req.n(cntBits - 1, 0)
  /** M: the number of selected values. */
  val m = Mux(req.k === 0.U || req.k >= req.n, req.n, req.k)(cntBits - 1, 0)
  /** No ATTEND is in the back end or waiting for it. */
  val backDrained = Wire(Bool())

  val s1Buf = Mem(p.maxTokens, SInt(scoreBits.W))

  // counters of the current phase
  val issueCnt = RegInit(0.U(cntBits.W)) // rows / scores / positions issued
  val doneCnt  = RegInit(0.U(cntBits.W)) // rows / scores received
  val aux      = RegInit(0.U(cntBits.W)) // third counter (scores into softmax, ids sent)
  val cmdSent  = RegInit(false.B)

  // defaults
  io.req.ready := false.B
  io.ids.valid := false.B
  io.ids.bits.id := 0.U
  io.ids.bits.last := false.B
  io.selIds := in("tkIds")
  val fWordValid = WireDefault(false.B)
  val fWord = WireDefault(0.U(p.wordBits.W))
  val fWordLast = WireDefault(false.B)

  keyFetch.io.rows.valid := false.B
  keyFetch.io.rows.bits := fetchRow(issueCnt, req.listBase, 1.U)
  keyAsm.io.out.ready := false.B
  keyUnpack.io.in.valid := false.B
  keyUnpack.io.in.bits.row := keyAsm.io.out.bits
  keyUnpack.io.in.bits.bits := 0.U
  keyUnpack.io.in.bits.isSigned := true.B
  keyUnpack.io.out.ready := false.B
  dot.io.query.valid := false.B
  dot.io.query.bits.q := req.query
  dot.io.query.bits.d := low(req.d, p.dimBits) // D <= maxHeadDim: checked at the intake
  dot.io.keys.valid := false.B
  dot.io.keys.bits.k := keyUnpack.io.out.bits
  dot.io.keys.bits.last := false.B
  dot.io.scores.ready := false.B
  softmax.io.cfg.scoreScale := req.scoreScale
  softmax.io.cfg.scoreShift := req.scoreShift
  softmax.io.bank := slot
  softmax.io.scores.valid := false.B
  softmax.io.scores.bits.s := dot.io.scores.bits.s
  softmax.io.scores.bits.last := false.B
  softmax.io.summary.ready := false.B
  rankTopk.io.cmd.valid := false.B
  rankTopk.io.cmd.bits := req.k
  rankTopk.io.in.valid := false.B
  rankTopk.io.in.bits.score := 0.U
  rankTopk.io.in.bits.last := false.B
  rankTopk.io.count.ready := false.B
  rankTopk.io.out.ready := false.B
  imp.io.tokReadId := 0.U
  imp.io.headReadId := 0.U
  imp.io.clear.valid := false.B
  imp.io.clear.bits.tok := req.clearTok
  imp.io.clear.bits.head := req.clearHead
  jobs.io.enq.valid := false.B

  /** Does this command use token importance (and so need ids below maxTokens)? */
  val usesImportance = req.opcode =/= Opcode.attend.U || req.accum
  val isAttend = req.opcode === Opcode.attend.U

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
      // ATTENDs overlap the back end; everything else waits for it to drain
      when(!r.error && r.opcode === Opcode.attend.U) { goto("waitSlot") }.otherwise { goto("drain") }
    }
  }

  when(in("drain")) {
    when(backDrained) {
      when(req.error || badId) {
        goto("respError")
      }.otherwise {
        switch(req.opcode) {
          is(Opcode.topkTokens.U)     { goto("list") }
          is(Opcode.topkHeads.U)      { goto("tkScores") }
          is(Opcode.clear.U)          { goto("clear") }
          is(Opcode.readImportance.U) { goto("list") }
        }
      }
    }
  }

  when(in("waitSlot")) {
    when(!slotBusy(slot)) { goto("loadQuery") }
  }

  when(in("loadQuery")) {
    dot.io.query.valid := true.B
    when(dot.io.query.fire) { goto("list") }
  }

  // ---------------- token list fetch ----------------
  val listBursts = ((req.n +& (p.burstBytes / 2 - 1).U) >> laneBits)(cntBits, 0)
  when(in("list")) {
    keyFetch.io.rows.valid := issueCnt < listBursts
    keyFetch.io.rows.bits := fetchRow(issueCnt, req.listBase, 1.U)
    when(keyFetch.io.rows.fire) { issueCnt := issueCnt + 1.U }
    keyAsm.io.out.ready := true.B
    when(keyAsm.io.out.fire) {
      val ids = VecInit(Seq.tabulate(idsPerBurst)(i => keyAsm.io.out.bits(16 * i + 15, 16 * i)))
      tokBuf(Cat(slot, low(doneCnt, listRowBits))) := ids
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
        goto("drain") // then the error response, in order
      }.elsewhen(isAttend) {
        goto("keys")
      }.elsewhen(req.opcode === Opcode.topkTokens.U) {
        goto("tkScores")
      }.otherwise {
        goto("respHeader")
      }
    }
  }

  // ---------------- key passes ----------------
  val keyBits = Mux(pass === 1.U, req.kMsbBits, req.kLsbBits)
  when(in("keys")) {
    // issue: the token ids of positions 0..N-1
    keyFetch.io.rows.valid := issueCnt < n
    keyFetch.io.rows.bits := fetchRow(tok(slot, issueCnt), Mux(pass === 1.U, req.kMsbBase, req.kLsbBase),
      rowBursts(req.d, keyBits))
    when(keyFetch.io.rows.fire) { issueCnt := issueCnt + 1.U }
    // rows -> unpack
    keyUnpack.io.in.valid := keyAsm.io.out.valid
    keyAsm.io.out.ready := keyUnpack.io.in.ready
    keyUnpack.io.in.bits.bits := keyBits
    keyUnpack.io.in.bits.isSigned := pass === 1.U
    // elements -> dot (pass 1: msb << kLsbBits; pass 2: the unsigned lsb as is)
    dot.io.keys.valid := keyUnpack.io.out.valid
    keyUnpack.io.out.ready := dot.io.keys.ready
    dot.io.keys.bits.k := Mux(pass === 1.U,
      VecInit(keyUnpack.io.out.bits.map(e => PlaneUnpacker.combineKey(e, 0.S, req.kLsbBits, false.B))),
      keyUnpack.io.out.bits)
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

  val summary = Reg(new SoftmaxSummary(p))
  when(in("summary")) {
    softmax.io.summary.ready := true.B
    when(softmax.io.summary.fire) {
      val pm = softmax.io.summary.bits.pmax
      summary := softmax.io.summary.bits
      issueCnt := 0.U
      doneCnt := 0.U
      aux := 0.U
      when(pass === 1.U && req.requant && req.kLsbBits =/= 0.U && pm < req.threshold) {
        pass := 2.U // this pass is dropped; its bank is overwritten by pass 2
        requantized := true.B
        goto("keys")
      }.otherwise {
        goto("handoff")
      }
    }
  }

  when(in("handoff")) {
    jobs.io.enq.valid := true.B
    when(jobs.io.enq.fire) {
      slotBusy(slot) := true.B
      slot := ~slot
      goto("idle")
    }
  }
  val job = jobs.io.enq.bits
  job.slot := slot
  job.tag := req.tag
  job.n := n
  job.m := m
  job.headId := req.headId
  job.d := req.d
  job.vBits := req.vBits
  job.accum := req.accum
  job.vBase := req.vBase
  job.startCycle := req.startCycle
  job.requantized := requantized
  job.pmax := summary.pmax
  job.recip := summary.recip

  // ---------------- ranking (TOPK_TOKENS, TOPK_HEADS) ----------------
  when(in("tkScores")) {
    val isTok = req.opcode === Opcode.topkTokens.U
    when(req.n === 0.U) {
      goto("respHeader") // nothing to rank: count 0
    }.otherwise {
      rankTopk.io.cmd.valid := !cmdSent
      when(rankTopk.io.cmd.fire) { cmdSent := true.B }
      imp.io.tokReadId := low(tok(slot, issueCnt), imp.idBits)
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

  // ---------------- front-end responses (not ATTEND) ----------------
  val fWordFire = WireDefault(false.B)
  when(in("respError")) {
    fWordValid := true.B
    fWord := Cat(req.opcode, req.tag, Opcode.error.U(8.W))
    fWordLast := true.B
    when(fWordFire) { frontFinish := true.B }
  }

  val isRank   = req.opcode === Opcode.topkTokens.U || req.opcode === Opcode.topkHeads.U
  val isRead   = req.opcode === Opcode.readImportance.U
  val rankKept = Mux(req.n === 0.U, 0.U, rankCount)
  when(in("respHeader")) {
    fWordValid := true.B
    val count = Mux(isRank, rankKept, Mux(isRead, n, 0.U))
    fWord := AttentionController.header(req.opcode, req.tag, count, 0.U, false.B)
    // a header is the whole packet for CLEAR and for empty rankings / reads
    val alone = count === 0.U
    fWordLast := alone
    when(fWordFire) {
      aux := 0.U
      when(alone) {
        frontFinish := true.B
      }.elsewhen(isRank) {
        goto("tkIds")
      }.otherwise {
        goto("readImp")
      }
    }
  }
  when(in("tkIds")) {
    val isTok = req.opcode === Opcode.topkTokens.U
    io.ids.valid := rankTopk.io.out.valid
    rankTopk.io.out.ready := io.ids.ready
    val pos = rankTopk.io.out.bits.position
    io.ids.bits.id := Mux(isTok, tok(slot, pos), pos.pad(16))
    io.ids.bits.last := rankTopk.io.out.bits.last
    when(io.ids.fire && io.ids.bits.last) { frontFinish := true.B }
  }
  when(in("readImp")) {
    imp.io.tokReadId := low(tok(slot, aux), imp.idBits)
    fWordValid := true.B
    fWord := imp.io.tokReadData
    fWordLast := aux === n - 1.U
    when(fWordFire) {
      aux := aux + 1.U
      when(fWordLast) { frontFinish := true.B }
    }
  }
  when(frontFinish) { goto("idle") }

  // ======================================================================================
  // Back end
  // ======================================================================================
  val bstate = RegInit(BackState("idle"))
  def bin(name: String): Bool = bstate === BackState(name)
  def bgoto(name: String): Unit = bstate := BackState(name)

  val cur = Reg(new Job)
  val pruneValues = cur.m =/= cur.n
  backDrained := bin("idle") && !jobs.io.deq.valid

  val pBuf   = Mem(p.maxTokens, UInt(pBits.W))
  /** The selected ids, four to a row (the response's id words). */
  val selBuf = Mem(idWords, Vec(4, UInt(p.tokenBits.W)))
  val outO   = Reg(Vec(p.maxHeadDim, SInt(64.W)))
  val bIssue = RegInit(0.U(cntBits.W)) // value rows issued
  val bDone  = RegInit(0.U(cntBits.W)) // value rows accumulated
  val bAux   = RegInit(0.U(cntBits.W)) // probabilities taken, words sent
  val bCmdSent    = RegInit(false.B)
  val bStreamSent = RegInit(false.B)

  jobs.io.deq.ready := bin("idle")
  when(jobs.io.deq.fire) {
    cur := jobs.io.deq.bits
    bIssue := 0.U
    bDone := 0.U
    bAux := 0.U
    bCmdSent := false.B
    bStreamSent := false.B
    bgoto("probs")
  }

  softmax.io.stream.valid := false.B
  softmax.io.stream.bits.bank := cur.slot
  softmax.io.stream.bits.n := cur.n
  softmax.io.stream.bits.recip := cur.recip
  softmax.io.probs.ready := false.B
  valueTopk.io.cmd.valid := false.B
  valueTopk.io.cmd.bits := cur.m
  valueTopk.io.in.valid := false.B
  valueTopk.io.in.bits.score := softmax.io.probs.bits.p
  valueTopk.io.in.bits.last := softmax.io.probs.bits.last
  valueTopk.io.count.ready := true.B
  valueTopk.io.out.ready := false.B
  valueAcc.io.d := low(cur.d, p.dimBits)
  valueAcc.io.rows.valid := false.B
  valueAcc.io.rows.bits.v := valUnpack.io.out.bits
  valueAcc.io.rows.bits.p := 0.U
  valueAcc.io.rows.bits.last := false.B
  valueAcc.io.rows.bits.empty := false.B
  valueAcc.io.result.ready := false.B
  imp.io.tokAcc.valid := false.B
  imp.io.tokAcc.bits.id := 0.U
  imp.io.tokAcc.bits.prob := 0.U
  imp.io.headAcc.valid := false.B
  imp.io.headAcc.bits.id := low(cur.headId, log2Ceil(p.maxHeads).max(1))
  imp.io.headAcc.bits.amount := 0.U
  valAsm.io.out.ready := false.B
  valUnpack.io.in.valid := false.B
  valUnpack.io.in.bits.row := valAsm.io.out.bits
  valUnpack.io.in.bits.bits := cur.vBits
  valUnpack.io.in.bits.isSigned := true.B
  valUnpack.io.out.ready := false.B
  val bWordValid = WireDefault(false.B)
  val bWord = WireDefault(0.U(p.wordBits.W))
  val bWordLast = WireDefault(false.B)
  val bWordFire = WireDefault(false.B)

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
  val t = tok(cur.slot, pos)
  val valuePhase = bin("probs") || bin("values")
  valFetch.io.rows.valid := valuePhase && posValid && inflight.io.enq.ready
  valFetch.io.rows.bits := fetchRow(t, cur.vBase, rowBursts(cur.d, cur.vBits))
  when(valuePhase) {
    inflight.io.enq.valid := posValid && valFetch.io.rows.ready
    inflight.io.enq.bits := posP
  }
  val posTaken = valuePhase && valFetch.io.rows.fire

  when(bin("probs")) {
    softmax.io.stream.valid := !bStreamSent
    when(softmax.io.stream.fire) { bStreamSent := true.B }
    valueTopk.io.cmd.valid := pruneValues && !bCmdSent
    when(valueTopk.io.cmd.fire) { bCmdSent := true.B }
    val j = softmax.io.probs.bits.idx
    when(pruneValues) {
      softmax.io.probs.ready := bCmdSent && valueTopk.io.in.ready
      valueTopk.io.in.valid := bCmdSent && softmax.io.probs.valid
    }.otherwise {
      posValid := softmax.io.probs.valid
      pos := j
      posP := softmax.io.probs.bits.p
      softmax.io.probs.ready := valFetch.io.rows.ready && inflight.io.enq.ready
    }
    when(softmax.io.probs.fire) {
      pBuf(ix(j)) := softmax.io.probs.bits.p
      imp.io.tokAcc.valid := cur.accum
      imp.io.tokAcc.bits.id := low(tok(cur.slot, j), imp.idBits)
      imp.io.tokAcc.bits.prob := softmax.io.probs.bits.p
      bAux := bAux + 1.U
      when(softmax.io.probs.bits.last) {
        bAux := 0.U
        bgoto("values")
      }
    }
  }
  when(bin("values") && pruneValues) {
    // the engine's selected positions, ascending
    posValid := valueTopk.io.out.valid
    pos := valueTopk.io.out.bits.position.pad(cntBits)
    posP := pBuf(ix(pos))
    valueTopk.io.out.ready := valFetch.io.rows.ready && inflight.io.enq.ready
  }
  when(posTaken) {
    val w = low(bIssue >> 2, idWordBits)
    val row = WireDefault(VecInit(Seq.fill(4)(t)))
    selBuf.write(w, row, VecInit((0 until 4).map(i => bIssue(1, 0) === i.U)))
    bIssue := bIssue + 1.U
  }
  when(bin("values") || (bin("probs") && !pruneValues)) {
    // rows -> unpack -> accumulator
    valUnpack.io.in.valid := valAsm.io.out.valid
    valAsm.io.out.ready := valUnpack.io.in.ready
    valueAcc.io.rows.valid := valUnpack.io.out.valid && inflight.io.deq.valid
    valUnpack.io.out.ready := valueAcc.io.rows.ready && inflight.io.deq.valid
    inflight.io.deq.ready := valueAcc.io.rows.ready && valUnpack.io.out.valid
    valueAcc.io.rows.bits.p := inflight.io.deq.bits
    valueAcc.io.rows.bits.last := bDone === cur.m - 1.U
    when(valueAcc.io.rows.fire) {
      bDone := bDone + 1.U
      when(valueAcc.io.rows.bits.last) { bgoto("result") }
    }
  }

  when(bin("result")) {
    valueAcc.io.result.ready := true.B
    when(valueAcc.io.result.fire) {
      outO := valueAcc.io.result.bits.o
      val hMax = ((BigInt(1) << p.headImportanceBits) - 1).U
      val amount = valueAcc.io.result.bits.headImp
      imp.io.headAcc.valid := cur.accum
      imp.io.headAcc.bits.amount := Mux(amount > hMax, hMax, amount)(p.headImportanceBits - 1, 0)
      bgoto("respHeader")
    }
  }

  // ---------------- ATTEND response ----------------
  when(bin("respHeader")) {
    bWordValid := true.B
    bWord := AttentionController.header(Opcode.attend.U(8.W), cur.tag, cur.m, cur.n, cur.requantized)
    when(bWordFire) { bgoto("respWord1") }
  }
  when(bin("respWord1")) {
    bWordValid := true.B
    bWord := Cat(io.cycle - cur.startCycle, 0.U(15.W), cur.pmax)
    when(bWordFire) {
      bAux := 0.U
      bgoto("respO")
    }
  }
  when(bin("respO")) {
    bWordValid := true.B
    bWord := outO(bAux(log2Ceil(p.maxHeadDim).max(1) - 1, 0)).asUInt
    when(bWordFire) {
      bAux := bAux + 1.U
      when(bAux === cur.d - 1.U) {
        bAux := 0.U
        bgoto("respIds")
      }
    }
  }
  when(bin("respIds")) {
    // one word of four ids a cycle; lanes past M are zero
    val row = selBuf(low(bAux, idWordBits))
    bWordValid := true.B
    bWord := VecInit((0 until 4).map(i => Mux((bAux << 2) + i.U < cur.m, row(i), 0.U))).asUInt
    bWordLast := bAux === (cur.m - 1.U) >> 2
    when(bWordFire) {
      bAux := bAux + 1.U
      when(bWordLast) {
        backFinish := true.B
        slotBusy(cur.slot) := false.B
        bgoto("idle")
      }
    }
  }

  // ---------------- the word stream: back end (ATTEND) or front end (the others) ----------------
  val backWords = bWordValid
  io.words.valid := Mux(backWords, bWordValid, fWordValid)
  io.words.bits.data := Mux(backWords, bWord, fWord)
  io.words.bits.last := Mux(backWords, bWordLast, fWordLast)
  bWordFire := backWords && io.words.fire
  fWordFire := !backWords && io.words.fire
  assert(!(bWordValid && fWordValid), "front and back end both answering")

  // ---------------- status ----------------
  io.status.state := state
  io.status.backState := bstate
  io.status.pass := pass
  io.status.fetch := keyFetch.io.status
  io.status.valueFetch := valFetch.io.status
  io.status.keysIssued := Mux(in("keys"), issueCnt, 0.U)
  io.status.scoresDone := Mux(in("keys"), aux, 0.U)
  io.status.probsDone := Mux(bin("probs"), bAux, 0.U)
  io.status.valuesIssued := Mux(valuePhase, bIssue, 0.U)
  io.status.valuesDone := Mux(valuePhase, bDone, 0.U)
  io.status.requestsDone := requestsDone
  io.status.softmaxBusy := softmax.io.busy || softmax.io.streaming
  io.status.valueTopkPhase := valueTopk.io.status.phase
  io.status.rankTopkPhase := rankTopk.io.status.phase
}

object AttentionController {
  /** A response header (SPEC.md section 5): opcode, tag, count; for ATTEND also N and the
    * requantized flag. */
  def header(opcode: UInt, tag: UInt, count: UInt, n: UInt, requantized: Bool): UInt =
    Cat(n.pad(16)(15, 0), 0.U(7.W), requantized, count.pad(16)(15, 0), tag, opcode)
}
