package spatten

import chisel3._
import chisel3.util._

/** One id for the packed id list of a response ([[ResponseWords.idBits]] bits). */
class PackedId extends Bundle {
  val id   = UInt(ResponseWords.idBits.W)
  /** The final id of the response. */
  val last = Bool()
}

/** Builds the response stream (SPEC.md section 5) from two sources: whole words (`words`:
  * headers, o_i, importance values) and ids (`ids`), which it packs into id words with
  * [[ResponseWords.ids]] (four to a word, lane `i` in bits `[16 i + 15 : 16 i]`, unused
  * lanes zero), a word leaving when it is full or the id carries `last` (that word then
  * carries `last`). `selIds` picks the source
  * (the controller switches it only between packets parts; a partial id word is never left
  * behind because the final id is marked `last`).
  *
  * The output goes through a two-entry queue, so the response stream's `valid`, `data`
  * and `last` come from registers and one word a cycle leaves under no back-pressure.
  *
  * @param p the hardware parameters
  */
class ResponseWriter(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val words  = Flipped(Decoupled(new WordStream(p)))
    val ids    = Flipped(Decoupled(new PackedId))
    val selIds = Input(Bool())
    val out    = Decoupled(new WordStream(p))
    /** Words sent on `out` since reset (wraps). */
    val sent   = Output(UInt(32.W))
  })

  val q = Module(new Queue(new WordStream(p), 2))
  io.out <> q.io.deq

  private val perWord = ResponseWords.idsPerWord
  private val laneIdx = log2Ceil(perWord)
  val lanes = Reg(Vec(perWord, UInt(ResponseWords.idBits.W)))
  val fill  = RegInit(0.U((laneIdx + 1).W))

  val idWordDone = fill === (perWord - 1).U || io.ids.bits.last
  val packed = Wire(new WordStream(p))
  packed.data := ResponseWords.ids((0 until perWord).map { i =>
    Mux(fill === i.U, io.ids.bits.id, Mux(i.U < fill, lanes(i), 0.U))
  })
  packed.last := io.ids.bits.last

  q.io.enq.valid := Mux(io.selIds, io.ids.valid && idWordDone, io.words.valid)
  q.io.enq.bits  := Mux(io.selIds, packed, io.words.bits)
  io.words.ready := !io.selIds && q.io.enq.ready
  io.ids.ready   := io.selIds && (!idWordDone || q.io.enq.ready)

  when(io.ids.fire) {
    when(idWordDone) {
      fill := 0.U
    }.otherwise {
      lanes(fill(laneIdx - 1, 0)) := io.ids.bits.id
      fill := fill + 1.U
    }
  }

  val sentCnt = RegInit(0.U(32.W))
  when(io.out.fire) { sentCnt := sentCnt + 1.U }
  io.sent := sentCnt
}
