package spatten

import chisel3._
import chisel3.util._
import chisel3.util.random.LFSR

/** One input beat of the top-k engine: a score; its position is its arrival order. */
class TopKInBeat(scoreBits: Int) extends Bundle {
  val score = UInt(scoreBits.W)
  /** Marks the final score of a request. */
  val last = Bool()
}

/** One output beat of the top-k engine: a selected item. */
class TopKOutBeat(scoreBits: Int, posBits: Int) extends Bundle {
  /** Arrival order (0-based) of the selected score in its request. */
  val position = UInt(posBits.W)
  val score    = UInt(scoreBits.W)
  /** Marks the final selected item of a request. */
  val last = Bool()
}

/** Cycle-accurate progress of the engine, for hang diagnosis and cycle accounting. */
class TopKStatus(cntBits: Int) extends Bundle {
  /** The engine holds a request (from the command until its result is fully taken). */
  val busy = Bool()
  /** Phase: 0 idle, 1 loading scores, 2 deciding, 3 partition passes, 4 filter/output. */
  val phase = UInt(3.W)
  /** Partition passes run for the current (or last) request. */
  val passes = UInt(16.W)
  /** Scores received so far for the current (or last) request. */
  val received = UInt(cntBits.W)
  /** Sticky per request: more than `capacity` scores came; the extra ones were dropped. */
  val overflow = Bool()
}

/** Exact top-k selection by parallel quick-select (SPEC.md section 3).
  *
  * Selects the `k` items with the largest key `(score, -position)` among `n` unsigned
  * scores: larger score first, equal scores broken towards the lower position. All keys
  * are distinct, so the selection is unique. `k >= n` keeps all `n`; `k == 0` keeps none.
  *
  * ==Interface (one request at a time; every port valid/ready)==
  *  1. `cmd`: one beat carrying `k` (16 bits, any value). Accepted only while idle.
  *  1. `in`: the request's `n` scores (`1 <= n`), position = arrival order, `last` on the
  *     final one. Accepted after `cmd`. Scores beyond `capacity` are consumed and dropped
  *     (the result covers the first `capacity`) and `status.overflow` is set.
  *  1. `count`: one beat per request carrying `min(k, n)`, the number of items that
  *     follow on `out`. This is how an empty result (k = 0) is signalled: `count` = 0
  *     and no `out` beat. It becomes valid when the selection is known, before or while
  *     `out` streams; the two outputs are independent (either may be taken first), and
  *     the engine accepts the next command only after both are fully taken.
  *  1. `out`: the selected `(position, score)` pairs in ascending position order, `last`
  *     on the final one.
  * No `ready` depends combinationally on a `valid` of the same port pair and no output
  * `valid` depends on any `ready`.
  *
  * ==Algorithm==
  * Scores are stored in a `ceil(capacity / comparators)`-row memory, `comparators`
  * scores a row. If `0 < k < n`, quick-select finds the k-th largest key `T`: the
  * candidates are the keys inside an open interval `(low, high)` (initially
  * unbounded), with `above` keys known to be larger than `high`. Each partition pass
  * reads all rows, `comparators` keys a cycle, and counts the candidates greater than
  * the pivot `p`; with `rank = above + count + 1`: `rank == k` gives `T = p`,
  * `rank > k` sets `low = p`, `rank < k` sets `high = p, above = rank`. The pivot is
  * the candidate with the smallest hash `h(position)`, where `h` is a bijection on
  * positions salted from an LFSR that steps once per request; both possible next
  * pivots (smallest hash above and below `p`) are tracked during the pass, so passes
  * run back to back. Then one filter pass streams out, in position order, every item
  * whose key is at least `T` (all items when `k >= n`).
  *
  * ==Cycles==
  * Loading takes one cycle a score. A partition pass takes `rows + 2` cycles with
  * `rows = ceil(n / comparators)`; the expected number of passes of randomized
  * quick-select is about `2 ln n`, the worst case `n - 1` (the hash only makes this
  * unlikely for any fixed input order). The filter pass takes one cycle a row without a
  * selected item and one cycle a selected item otherwise (back-pressure aside). The
  * passes scan all `n` items rather than a compacted candidate list, which keeps the
  * datapath to `comparators` comparators and one memory read port.
  *
  * @param scoreBits   width of the unsigned scores
  * @param capacity    largest `n`
  * @param comparators keys compared a cycle (a power of two)
  */
class TopKEngine(p: SpAttenParams, scoreBits: Int = 17, capacity: Int = -1, comparators: Int = -1)
    extends Module {
  val cap: Int = if (capacity > 0) capacity else p.maxTokens
  val lanes: Int = if (comparators > 0) comparators else p.topkParallelism
  require(scoreBits >= 1, s"scoreBits must be positive, got $scoreBits")
  require(cap >= 1, s"capacity must be positive, got $cap")
  require(lanes >= 1 && Integer.bitCount(lanes) == 1, s"comparators must be a power of two, got $lanes")

  val kBits:    Int = 16
  val posBits:  Int = math.max(1, log2Ceil(cap))
  val cntBits:  Int = log2Ceil(cap + 1)
  val laneBits: Int = log2Ceil(lanes)
  val rows:     Int = (cap + lanes - 1) / lanes
  val rowBits:  Int = math.max(1, log2Ceil(rows + 1))

  val io = IO(new Bundle {
    val cmd    = Flipped(Decoupled(UInt(kBits.W)))
    val in     = Flipped(Decoupled(new TopKInBeat(scoreBits)))
    val count  = Decoupled(UInt(cntBits.W))
    val out    = Decoupled(new TopKOutBeat(scoreBits, posBits))
    val status = Output(new TopKStatus(cntBits))
  })

  /** A key `(score, -position)` and its pivot hash. */
  class Item extends Bundle {
    val score = UInt(scoreBits.W)
    val pos   = UInt(posBits.W)
  }
  /** `a > b` in key order: larger score, or equal score and lower position. */
  private def keyGt(a: Item, b: Item): Bool =
    a.score > b.score || (a.score === b.score && a.pos < b.pos)

  /** Pivot hash: a bijection on `posBits`-bit positions (xor salt, odd multiply,
    * xor-shift), so distinct positions never tie. */
  private def hash(pos: UInt, salt: UInt): UInt = {
    val x = (pos ^ salt)(posBits - 1, 0)
    val m = (x * "h9E37".U(16.W))(posBits - 1, 0)
    if (posBits > 1) m ^ (m >> ((posBits + 1) / 2)) else m
  }

  /** A tracked pivot candidate: the item with the smallest hash seen so far. */
  class Best extends Bundle {
    val valid = Bool()
    val hash  = UInt(posBits.W)
    val item  = new Item
  }
  private def bestNone: Best = {
    val b = Wire(new Best)
    b := DontCare
    b.valid := false.B
    b
  }
  private def better(a: Best, b: Best): Best = Mux(!b.valid || (a.valid && a.hash < b.hash), a, b)

  val sIdle :: sLoad :: sDecide :: sPartition :: sFilter :: Nil = Enum(5)
  val state = RegInit(sIdle)

  val mem = SyncReadMem(rows, Vec(lanes, UInt(scoreBits.W)))

  val kReg     = Reg(UInt(kBits.W))
  val nReg     = RegInit(0.U(cntBits.W))
  val overflow = RegInit(false.B)
  val passes   = RegInit(0.U(16.W))
  val salt     = LFSR(16, io.cmd.fire)(posBits - 1, 0)
  val saltReg  = Reg(UInt(posBits.W))

  // Quick-select state.
  val pivot     = Reg(new Item)
  val low       = Reg(new Item)
  val lowValid  = Reg(Bool())
  val high      = Reg(new Item)
  val highValid = Reg(Bool())
  val above     = Reg(UInt(cntBits.W))
  val cntGt     = Reg(UInt(cntBits.W))
  val upBest    = Reg(new Best)
  val downBest  = Reg(new Best)
  val loadBest  = Reg(new Best)
  val issueRow  = Reg(UInt(rowBits.W))
  val procValid = RegInit(false.B)
  val procRow   = Reg(UInt(rowBits.W))

  // Result.
  val keepAll    = Reg(Bool())
  val threshold  = Reg(new Item)
  val countReg   = Reg(UInt(cntBits.W))
  val countDone  = RegInit(false.B)
  val itemsDone  = RegInit(false.B)
  val emitted    = Reg(UInt(cntBits.W))
  val fRow       = Reg(UInt(rowBits.W))
  val fFresh     = RegInit(false.B)
  val doneMask   = Reg(UInt(lanes.W))

  val nRows = (nReg +& (lanes - 1).U) >> laneBits

  // ---------------------------------------------------------------- command and load
  io.cmd.ready := state === sIdle
  io.in.ready  := state === sLoad
  when(io.cmd.fire) {
    kReg     := io.cmd.bits
    nReg     := 0.U
    overflow := false.B
    passes   := 0.U
    saltReg  := salt
    loadBest := bestNone
    state    := sLoad
  }
  val inItem = Wire(new Item)
  inItem.score := io.in.bits.score
  inItem.pos   := nReg(posBits - 1, 0)
  val inFits = nReg < cap.U
  when(io.in.fire) {
    when(inFits) {
      val data = VecInit(Seq.fill(lanes)(io.in.bits.score))
      val lane = if (lanes > 1) nReg(laneBits - 1, 0) else 0.U
      mem.write((nReg >> laneBits)(math.max(1, log2Ceil(rows)) - 1, 0), data, UIntToOH(lane, lanes).asBools)
      nReg := nReg + 1.U
      val cand = Wire(new Best)
      cand.valid := true.B
      cand.hash  := hash(inItem.pos, saltReg)
      cand.item  := inItem
      loadBest := better(cand, loadBest)
    }.otherwise {
      overflow := true.B
    }
    when(io.in.bits.last) { state := sDecide }
  }

  // ---------------------------------------------------------------- decide
  val kClamped = Mux(kReg > nReg, nReg, kReg(cntBits.min(kBits) - 1, 0).pad(cntBits))
  when(state === sDecide) {
    countReg  := kClamped
    countDone := false.B
    itemsDone := kReg === 0.U
    emitted   := 0.U
    fRow      := 0.U
    fFresh    := false.B
    doneMask  := 0.U
    keepAll   := kReg >= nReg
    when(kReg === 0.U || kReg >= nReg) {
      state := sFilter
    }.otherwise {
      pivot     := loadBest.item
      lowValid  := false.B
      highValid := false.B
      above     := 0.U
      cntGt     := 0.U
      upBest    := bestNone
      downBest  := bestNone
      issueRow  := 0.U
      procValid := false.B
      passes    := 1.U
      state     := sPartition
    }
  }

  // ---------------------------------------------------------------- memory read port
  val fAdvance = Wire(Bool())
  val rowSel = Mux(state === sPartition, issueRow, Mux(fAdvance, fRow + 1.U, fRow))
  val rowData = mem.read(rowSel(math.max(1, log2Ceil(rows)) - 1, 0), state === sPartition || state === sFilter)

  /** The items of the row `row` as seen on the memory output, with their in-range flags. */
  private def rowItems(row: UInt): Seq[(Item, Bool)] = (0 until lanes).map { l =>
    val it = Wire(new Item)
    val pos = (if (lanes > 1) Cat(row, l.U(laneBits.W)) else row)
    it.score := rowData(l)
    it.pos   := pos(posBits - 1, 0)
    (it, pos < nReg)
  }

  // ---------------------------------------------------------------- partition passes
  when(state === sPartition) {
    val issuing = issueRow < nRows
    procValid := issuing
    procRow   := issueRow
    when(issuing) { issueRow := issueRow + 1.U }

    when(procValid) {
      val items = rowItems(procRow)
      val flags = items.map { case (it, inRange) =>
        val cand = inRange && (!lowValid || keyGt(it, low)) && (!highValid || keyGt(high, it)) &&
          !(it.score === pivot.score && it.pos === pivot.pos)
        val gt = keyGt(it, pivot)
        (cand && gt, cand && !gt)
      }
      def pick(sel: Seq[Bool]): Best = VecInit(items.zip(sel).map { case ((it, _), s) =>
        val b = Wire(new Best)
        b.valid := s
        b.hash  := hash(it.pos, saltReg)
        b.item  := it
        b
      }).reduceTree((a, b) => better(a, b))
      cntGt    := cntGt + PopCount(flags.map(_._1))
      upBest   := better(pick(flags.map(_._1)), upBest)
      downBest := better(pick(flags.map(_._2)), downBest)
    }

    when(!issuing && !procValid) {
      // End of a pass: place the pivot.
      val rank = above +& cntGt +& 1.U
      when(rank === kReg) {
        threshold := pivot
        state     := sFilter
      }.otherwise {
        when(rank > kReg) {
          low      := pivot
          lowValid := true.B
          pivot    := upBest.item
        }.otherwise {
          high      := pivot
          highValid := true.B
          above     := rank
          pivot     := downBest.item
        }
        passes   := passes + 1.U
        cntGt    := 0.U
        upBest   := bestNone
        downBest := bestNone
        issueRow := 0.U
      }
    }
  }

  // ---------------------------------------------------------------- filter and output
  val fItems  = rowItems(fRow)
  val selMask = VecInit(fItems.map { case (it, inRange) =>
    inRange && (keepAll || !keyGt(threshold, it))
  }).asUInt
  val pending   = selMask & ~doneMask
  val itemsLive = state === sFilter && !itemsDone
  val lane      = PriorityEncoder(pending)
  val laneOH    = UIntToOH(lane, lanes)
  val outItem   = VecInit(fItems.map(_._1))(lane)

  io.out.valid         := itemsLive && fFresh && pending.orR
  io.out.bits.position := outItem.pos
  io.out.bits.score    := outItem.score
  io.out.bits.last     := emitted + 1.U === countReg
  io.count.valid       := state === sFilter && !countDone
  io.count.bits        := countReg

  val lastOfRow = (pending & ~laneOH) === 0.U
  fAdvance := itemsLive && fFresh && (!pending.orR || (lastOfRow && io.out.ready))

  when(state === sFilter) {
    when(itemsLive) { fFresh := true.B }
    when(io.out.fire) {
      emitted  := emitted + 1.U
      doneMask := doneMask | laneOH
      when(io.out.bits.last) { itemsDone := true.B }
    }
    when(fAdvance) {
      fRow     := fRow + 1.U
      doneMask := 0.U
    }
    when(io.count.fire) { countDone := true.B }
    val countTaken = countDone || io.count.fire
    val itemsTaken = itemsDone || (io.out.fire && io.out.bits.last)
    when(countTaken && itemsTaken) { state := sIdle }
  }

  io.status.busy     := state =/= sIdle
  io.status.phase    := state.asUInt.pad(3)
  io.status.passes   := passes
  io.status.received := nReg
  io.status.overflow := overflow
}
