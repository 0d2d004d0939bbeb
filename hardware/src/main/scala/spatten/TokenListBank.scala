package spatten

import chisel3._
import chisel3.util._

/** The token-list bank of the controller: `slots` slots, one per ATTEND (head) in flight, each holding
  * the token ids of one request's list (SPEC.md section 4: 16-bit ids, `burstBytes / 2` to
  * a burst, one burst a row), and the slots' busy flags.
  *
  * Interface: the front end ([[FrontEnd]]) claims a free slot (`slotBusy`), fills it row
  * by row with [[write]] while the token list is fetched and reads ids with [[tok]] (keys,
  * ranking, READ_IMPORTANCE); the back end ([[BackEnd]]) reads ids of its job's slot with
  * [[tok]] (value rows, importance, the response's ids) and frees the slot after the
  * response. Every [[tok]] call is one combinational read port of the memory.
  *
  * Not a module: it lives inside [[AttentionController]] (its memory is the controller's).
  *
  * @param p the hardware parameters
  */
class TokenListBank(p: SpAttenParams, val slots: Int = 2) {
  require(slots >= 2 && Integer.bitCount(slots) == 1, s"slots must be a power of two >= 2, got $slots")
  /** Bits of a slot number. */
  val slotBits: Int = log2Ceil(slots)
  /** Ids in one row (one burst of the list). */
  val idsPerRow: Int = p.burstBytes * 8 / p.tokenBits
  /** Bits of an id's lane within its row. */
  val laneBits: Int = log2Ceil(idsPerRow)
  /** Rows of the longest list (`maxTokens` ids). */
  val rows: Int = (p.maxTokens + idsPerRow - 1) / idsPerRow
  val rowBits: Int = log2Ceil(rows).max(1)

  /** Slot `s` holds a list whose ATTEND has not yet answered. */
  val slotBusy = RegInit(VecInit(Seq.fill(slots)(false.B)))
  val tokBuf = Mem(slots << rowBits, Vec(idsPerRow, UInt(p.tokenBits.W)))

  /** The ids of one fetched list burst, lane `i` in bits `[tokenBits*(i+1)-1 : tokenBits*i]`. */
  def rowIds(burst: UInt): Vec[UInt] =
    VecInit(Seq.tabulate(idsPerRow)(i => burst(p.tokenBits * i + p.tokenBits - 1, p.tokenBits * i)))

  /** Writes row `row` of the list in slot `slot`, which must be free (the back end reads a
    * busy slot's list until its response). */
  def write(slot: UInt, row: UInt, ids: Vec[UInt]): Unit = {
    assert(!slotBusy(slot), "a token list row written into a slot whose ATTEND has not answered")
    tokBuf(Cat(slot, AttentionController.low(row, rowBits))) := ids
  }

  /** Row `row` of the list in slot `slot` (one combinational read port). */
  def row(slot: UInt, row: UInt): Vec[UInt] = tokBuf(Cat(slot, AttentionController.low(row, rowBits)))

  /** Token id at position `j` of the list in slot `slot`. */
  def tok(slot: UInt, j: UInt): UInt = {
    val jj = j.pad(rowBits + laneBits)
    val row = tokBuf(Cat(slot, AttentionController.low(jj >> laneBits, rowBits)))
    if (laneBits == 0) row(0) else row(jj(laneBits - 1, 0))
  }
}
