package spatten

import chisel3._
import chisel3.util._
import chisel3.util.random.LFSR

/** One input beat of the top-k engine; a score's position is its arrival order.
  *
  * With `lanes = 1` a beat is one score (`score`). With `lanes > 1` a beat is up to `lanes`
  * scores (`scores(i)` for `i < count`, `count` in 1..lanes), the next positions in order;
  * every beat of a request but its last carries `lanes` scores. */
class TopKInBeat(scoreBits: Int, val lanes: Int = 1) extends Bundle {
  val score  = if (lanes == 1) Some(UInt(scoreBits.W)) else None
  val scores = if (lanes > 1) Some(Vec(lanes, UInt(scoreBits.W))) else None
  val count  = if (lanes > 1) Some(UInt(log2Ceil(lanes + 1).W)) else None
  /** Marks the final beat of a request. */
  val last = Bool()
}

/** One output beat of the top-k engine.
  *
  * With `lanes = 1` a beat is one selected item: its `position` (arrival order, 0-based)
  * and `score`. With `lanes > 1` a beat is the selected items of one block of `lanes`
  * consecutive positions: `position` is the block's first position (a multiple of
  * `lanes`), `mask` bit `i` says that position `position + i` is selected (at least one
  * bit is set), `scores(i)` is its score. */
class TopKOutBeat(scoreBits: Int, posBits: Int, val lanes: Int = 1) extends Bundle {
  val position = UInt(posBits.W)
  val score    = if (lanes == 1) Some(UInt(scoreBits.W)) else None
  val mask     = if (lanes > 1) Some(UInt(lanes.W)) else None
  val scores   = if (lanes > 1) Some(Vec(lanes, UInt(scoreBits.W))) else None
  /** Marks the beat with the final selected item of a request. */
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
  *     final beat; `inLanes` scores a beat (all beats but the last full). Accepted after `cmd`. Scores beyond `capacity` are consumed and dropped
  *     (the result covers the first `capacity`) and `status.overflow` is set.
  *  1. `count`: one beat per request carrying `min(k, n)`, the number of items that
  *     follow on `out`. This is how an empty result (k = 0) is signalled: `count` = 0
  *     and no `out` beat. It becomes valid when the selection is known, before or while
  *     `out` streams; the two outputs are independent (either may be taken first), and
  *     the engine accepts the next command only after both are fully taken.
  *  1. `out`: the selected `(position, score)` pairs in ascending position order, `last`
  *     on the final beat; with `outLanes > 1` a beat carries the selected items of one
  *     `outLanes`-aligned block of positions (a mask), the blocks in ascending order.
  * Every `ready` and `valid` the engine drives is a function of its registers and
  * memories only (no combinational path from any input `valid` or `ready`). Below,
  * `n` is the number of scores kept (at most `capacity`).
  *
  * ==Algorithm==
  * Scores are kept twice: in arrival order in a `ceil(capacity / comparators)`-row
  * store (`comparators` scores a row, for the filter pass), and as `(score, position)`
  * candidates in the first of three candidate buffers (`comparators` banks each). If
  * `0 < k < n`, quick-select finds the k-th largest key `T`. A partition pass reads
  * the source buffer's candidates, `comparators` a cycle, compares each with the pivot
  * `p` and writes those above `p` and those below `p`, each side compacted in
  * arrival order (a prefix count and a rotation onto the banks), into the two other
  * buffers. With `rank = above + (candidates above p) + 1`: `rank == k` gives `T = p`;
  * `rank > k` keeps the upper side; `rank < k` keeps the lower side and sets
  * `above = rank`. The kept side's buffer becomes the next source and the other two
  * the next targets. The pivot is the candidate with the smallest hash
  * `h(position)`, a bijection on positions (xor salt, odd multiply, xor-shift) salted
  * from an LFSR that steps once per request, i.e. a pseudo-random candidate; the
  * smallest-hash candidate on each side is tracked during the pass, so passes run back
  * to back. Then one filter pass over the store streams out, in position order, every
  * item whose key is at least `T` (all items when `k >= n`, none when `k == 0`).
  *
  * ==Cycles==
  * Loading takes one cycle a beat of `inLanes` scores (the input never stalls). A partition pass over `m`
  * candidates takes `ceil(m / comparators) + 2` cycles; the expected total is about
  * `3.4 n / comparators` (randomized quick-select), the worst case, which the salted
  * hash makes unlikely for any input order, `n` passes: `O(n^2 / comparators)`.
  * The filter pass takes one cycle per store row without a selected item and one
  * cycle per `outLanes`-block with a selected item otherwise (with `outLanes = 1`: per
  * selected item; back-pressure aside). Measured (no stalls, random
  * distinct scores, cycles from the last score to the `count` beat / to the last
  * `out` beat): n = 64, 4 comparators, k = 16: 67 / 87; n = 1024, 16 comparators,
  * k = 256: 194 / 450; n = 2048, 16 comparators, k = 512: 355 / 868.
  *
  * Storage: `capacity * scoreBits` bits of store plus `3 * capacity * (scoreBits +
  * log2(capacity))` bits of candidate buffers.
  *
  * @param p           the accelerator parameters (defaults for the two below)
  * @param scoreBits   width of the unsigned scores (17 for probabilities, 48 for importance)
  * @param capacity    largest `n`; `<= 0` means `p.maxTokens`
  * @param comparators keys compared a cycle, a power of two; `<= 0` means `p.topkParallelism`
  * @param inLanes     scores an `in` beat carries, a power of two dividing `comparators`
  * @param outLanes    positions an `out` beat covers, a power of two dividing `comparators`
  * @param moduleName  the Verilog module name (a variant elaborated as its own top, in
  *                    `Elaborate.tops`, passes its key)
  */
class TopKEngine(p: SpAttenParams, scoreBits: Int = 17, capacity: Int = 0, comparators: Int = 0,
    moduleName: String = "TopKEngine", inLanes: Int = 1, outLanes: Int = 1) extends Module {
  override def desiredName: String = moduleName
  val cap: Int = if (capacity > 0) capacity else p.maxTokens
  val lanes: Int = if (comparators > 0) comparators else p.topkParallelism
  require(scoreBits >= 1, s"scoreBits must be positive, got $scoreBits")
  require(cap >= 1, s"capacity must be positive, got $cap")
  require(lanes >= 1 && Integer.bitCount(lanes) == 1, s"comparators must be a power of two, got $lanes")
  require(inLanes >= 1 && Integer.bitCount(inLanes) == 1 && inLanes <= lanes && cap % inLanes == 0,
    s"inLanes must be a power of two dividing comparators ($lanes) and capacity ($cap), got $inLanes")
  require(outLanes >= 1 && Integer.bitCount(outLanes) == 1 && outLanes <= lanes,
    s"outLanes must be a power of two dividing comparators ($lanes), got $outLanes")

  val kBits:    Int = 16
  val posBits:  Int = math.max(1, log2Ceil(cap))
  val cntBits:  Int = log2Ceil(cap + 1)
  val laneBits: Int = log2Ceil(lanes)
  val rows:     Int = (cap + lanes - 1) / lanes
  val rowBits:  Int = math.max(1, log2Ceil(rows + 1))

  val io = IO(new Bundle {
    val cmd    = Flipped(Decoupled(UInt(kBits.W)))
    val in     = Flipped(Decoupled(new TopKInBeat(scoreBits, inLanes)))
    val count  = Decoupled(UInt(cntBits.W))
    val out    = Decoupled(new TopKOutBeat(scoreBits, posBits, outLanes))
    val status = Output(new TopKStatus(cntBits))
  })

  /** A key `(score, -position)`: a score and its position. */
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

  val addrBits: Int = math.max(1, log2Ceil(rows))
  /** The scores in arrival order, `lanes` a row: read by the filter pass. */
  val store = SyncReadMem(rows, Vec(lanes, UInt(scoreBits.W)))
  /** Three candidate buffers, each `lanes` banks of `rows` items; candidate `i` of a
    * buffer lives in bank `i % lanes`, row `i / lanes`. Their roles (source, above the
    * pivot, below the pivot) rotate after every pass. */
  val work = Seq.fill(3)(Seq.fill(lanes)(SyncReadMem(rows, new Item)))

  val kReg     = Reg(UInt(kBits.W))
  val nReg     = RegInit(0.U(cntBits.W))
  val overflow = RegInit(false.B)
  val passes   = RegInit(0.U(16.W))
  val salt     = LFSR(16, io.cmd.fire)(posBits - 1, 0)
  val saltReg  = Reg(UInt(posBits.W))

  // Quick-select state.
  val srcSel    = Reg(UInt(2.W))
  val upSel     = Reg(UInt(2.W))
  val downSel   = Reg(UInt(2.W))
  val srcCount  = Reg(UInt(cntBits.W))
  val upCount   = Reg(UInt(cntBits.W))
  val downCount = Reg(UInt(cntBits.W))
  val pivot     = Reg(new Item)
  val above     = Reg(UInt(cntBits.W))
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
  /** Blocks of `outLanes` positions in a row; which of the current row's are sent. */
  val outBlocks  = lanes / outLanes
  val doneMask   = Reg(UInt(outBlocks.W))

  private def rowOf(index: UInt): UInt = (index >> laneBits)(addrBits - 1, 0)
  private def laneOf(index: UInt): UInt = if (lanes > 1) index(laneBits - 1, 0) else 0.U
  private def rowsOf(count: UInt): UInt = (count +& (lanes - 1).U) >> laneBits

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
  // The beat's scores and count; its lane i is position nReg + i, which lies in lane
  // laneOf(nReg) + i of the current row (beats are inLanes-aligned: all but the last full).
  val inScores: Seq[UInt] = if (inLanes == 1) Seq(io.in.bits.score.get) else io.in.bits.scores.get
  val inCount: UInt = if (inLanes == 1) 1.U else io.in.bits.count.get
  val inLaneBits = log2Ceil(inLanes)
  val inItems = inScores.zipWithIndex.map { case (sc, i) =>
    val it = Wire(new Item)
    it.score := sc
    it.pos   := (nReg + i.U)(posBits - 1, 0)
    it
  }
  val inTake = VecInit(Seq.tabulate(inLanes)(i => i.U < inCount && nReg + i.U < cap.U))
  val inFits = inTake.asUInt.orR
  // Writes into the candidate buffers: the load writes buffer 0; a pass writes the
  // buffers with the "above" and "below" roles, compacted (see `compact`).
  val wrEn   = Wire(Vec(3, Vec(lanes, Bool())))
  val wrRow  = Wire(Vec(3, Vec(lanes, UInt(addrBits.W))))
  val wrData = Wire(Vec(3, Vec(lanes, new Item)))
  wrEn   := 0.U.asTypeOf(wrEn)
  wrRow  := DontCare
  wrData := DontCare
  for (w <- 0 until 3; b <- 0 until lanes) {
    when(wrEn(w)(b)) { work(w)(b).write(wrRow(w)(b), wrData(w)(b)) }
  }
  when(io.in.fire) {
    // lane b of the row takes the beat's lane b % inLanes when b is in the beat's slice
    val slice = if (lanes == inLanes) 0.U else (laneOf(nReg) >> inLaneBits)
    val bLane = (0 until lanes).map(b => b % inLanes)
    val bHit = (0 until lanes).map(b => (if (lanes == inLanes) true.B else (b / inLanes).U === slice) && inTake(b % inLanes))
    when(inFits) {
      store.write(rowOf(nReg), VecInit(bLane.map(inScores(_))), VecInit(bHit))
      for (b <- 0 until lanes) {
        wrEn(0)(b)   := bHit(b)
        wrRow(0)(b)  := rowOf(nReg)
        wrData(0)(b) := inItems(bLane(b))
      }
      nReg := nReg + PopCount(inTake)
      val cand = VecInit(inItems.zip(inTake).map { case (it, t) =>
        val c = Wire(new Best)
        c.valid := t
        c.hash  := hash(it.pos, saltReg)
        c.item  := it
        c
      }).reduceTree((a, b) => better(a, b))
      loadBest := better(cand, loadBest)
    }
    when(PopCount(inTake) =/= inCount) { overflow := true.B }
    when(io.in.bits.last) { state := sDecide }
  }
  assert(!io.in.fire || io.in.bits.last || inCount === inLanes.U,
    "TopKEngine: an in beat before the last carries fewer than inLanes scores")

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
      srcSel    := 0.U
      upSel     := 1.U
      downSel   := 2.U
      srcCount  := nReg
      upCount   := 0.U
      downCount := 0.U
      above     := 0.U
      upBest    := bestNone
      downBest  := bestNone
      issueRow  := 0.U
      procValid := false.B
      passes    := 1.U
      state     := sPartition
    }
  }

  // ---------------------------------------------------------------- memory reads
  val fAdvance = Wire(Bool())
  val fRowSel  = Mux(fAdvance, fRow + 1.U, fRow)
  val rowData  = store.read(fRowSel(addrBits - 1, 0), state === sFilter)
  val srcReads = work.zipWithIndex.map { case (banks, w) =>
    banks.map(_.read(issueRow(addrBits - 1, 0), state === sPartition && srcSel === w.U))
  }
  val srcData = VecInit(srcReads.map(VecInit(_)))(srcSel)

  /** The items of the row `row` of the store as seen on its read port, with in-range flags. */
  private def rowItems(row: UInt): Seq[(Item, Bool)] = (0 until lanes).map { l =>
    val it = Wire(new Item)
    val pos = (if (lanes > 1) Cat(row, l.U(laneBits.W)) else row)
    it.score := rowData(l)
    it.pos   := pos(posBits - 1, 0)
    (it, pos < nReg)
  }

  /** Writes the selected lanes of `items`, in lane order, to consecutive places of the
    * buffer `dst` starting at candidate index `ptr` (a prefix count and a rotation). */
  private def compact(items: Seq[Item], sel: Seq[Bool], ptr: UInt, dst: UInt): Unit = {
    val prefix = sel.scanLeft(0.U(log2Ceil(lanes + 1).W))((acc, s) => acc + s.asUInt)
    val total  = prefix.last
    val packed = (0 until lanes).map { j =>
      Mux1H(sel.zip(prefix).map { case (s, pre) => s && pre === j.U }, items)
    }
    val off = laneOf(ptr)
    for (b <- 0 until lanes) {
      val j   = (b.U(laneBits.max(1).W) - off)(laneBits.max(1) - 1, 0)
      val jj  = if (lanes > 1) j else 0.U
      val row = rowOf(ptr) + (b.U < off).asUInt
      for (w <- 0 until 3) {
        when(dst === w.U && jj < total) {
          wrEn(w)(b)   := true.B
          wrRow(w)(b)  := row
          wrData(w)(b) := VecInit(packed)(jj)
        }
      }
    }
  }

  // ---------------------------------------------------------------- partition passes
  when(state === sPartition) {
    val issuing = issueRow < rowsOf(srcCount)
    procValid := issuing
    procRow   := issueRow
    when(issuing) { issueRow := issueRow + 1.U }

    when(procValid) {
      val items = (0 until lanes).map { l =>
        val it = srcData(l)
        val idx = if (lanes > 1) Cat(procRow, l.U(laneBits.W)) else procRow
        (it, idx < srcCount)
      }
      val flags = items.map { case (it, valid) =>
        val isPivot = it.score === pivot.score && it.pos === pivot.pos
        val gt = keyGt(it, pivot)
        (valid && gt, valid && !gt && !isPivot)
      }
      def pick(sel: Seq[Bool]): Best = VecInit(items.zip(sel).map { case ((it, _), s) =>
        val b = Wire(new Best)
        b.valid := s
        b.hash  := hash(it.pos, saltReg)
        b.item  := it
        b
      }).reduceTree((a, b) => better(a, b))
      val ups   = flags.map(_._1)
      val downs = flags.map(_._2)
      compact(items.map(_._1), ups, upCount, upSel)
      compact(items.map(_._1), downs, downCount, downSel)
      upCount   := upCount + PopCount(ups)
      downCount := downCount + PopCount(downs)
      upBest    := better(pick(ups), upBest)
      downBest  := better(pick(downs), downBest)
    }

    when(!issuing && !procValid) {
      // End of a pass: place the pivot, keep the side that holds the k-th key.
      val rank = above +& upCount +& 1.U
      when(rank === kReg) {
        threshold := pivot
        state     := sFilter
      }.otherwise {
        when(rank > kReg) {
          pivot    := upBest.item
          srcSel   := upSel
          srcCount := upCount
          upSel    := srcSel
        }.otherwise {
          above    := rank(cntBits - 1, 0)
          pivot    := downBest.item
          srcSel   := downSel
          srcCount := downCount
          downSel  := srcSel
        }
        passes    := passes + 1.U
        upCount   := 0.U
        downCount := 0.U
        upBest    := bestNone
        downBest  := bestNone
        issueRow  := 0.U
      }
    }
  }

  // ---------------------------------------------------------------- filter and output
  val fItems  = rowItems(fRow)
  val selMask = VecInit(fItems.map { case (it, inRange) =>
    inRange && (keepAll || !keyGt(threshold, it))
  }).asUInt
  /** The selected lanes of each block of the row, and the blocks with any. */
  val blockSel  = VecInit(Seq.tabulate(outBlocks)(j => selMask((j + 1) * outLanes - 1, j * outLanes)))
  val pending   = VecInit(blockSel.map(_.orR)).asUInt & ~doneMask
  val itemsLive = state === sFilter && !itemsDone
  val blk       = PriorityEncoder(pending)
  val blkOH     = UIntToOH(blk, outBlocks)
  val outMask   = blockSel(blk)
  val outCount  = PopCount(outMask)
  val fItemsV   = VecInit(fItems.map(_._1))

  io.out.valid         := itemsLive && fFresh && pending.orR
  if (outLanes == 1) {
    val outItem = fItemsV(blk)
    io.out.bits.position := outItem.pos
    io.out.bits.score.get := outItem.score
  } else {
    val blocksV = VecInit(Seq.tabulate(outBlocks)(j => VecInit(Seq.tabulate(outLanes)(i => fItemsV(j * outLanes + i).score))))
    io.out.bits.position := fItemsV(Cat(blk, 0.U(log2Ceil(outLanes).W))).pos
    io.out.bits.mask.get := outMask
    io.out.bits.scores.get := blocksV(blk)
  }
  io.out.bits.last     := emitted + outCount === countReg
  io.count.valid       := state === sFilter && !countDone
  io.count.bits        := countReg

  val lastOfRow = (pending & ~blkOH) === 0.U
  fAdvance := itemsLive && fFresh && (!pending.orR || (lastOfRow && io.out.ready))

  when(state === sFilter) {
    when(itemsLive) { fFresh := true.B }
    when(io.out.fire) {
      emitted  := emitted + outCount
      doneMask := doneMask | blkOH
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
