package spatten

import chisel3._
import chisel3.util._

/** Up to [[SpAttenParams.keysPerCycle]] rows to fetch in one beat, in request order:
  * `rows(i)` for `i < count` (`count` in 1..keysPerCycle). The issue side of a
  * [[RowFetcher]] that fetches several rows a cycle (issue 15). */
class FetchRows(p: SpAttenParams) extends Bundle {
  val rows  = Vec(p.keysPerCycle, new FetchRow(p))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
}

/** Up to [[SpAttenParams.keysPerCycle]] whole plane rows in request order: `rows(i)` for
  * `i < count` (`count` in 1..keysPerCycle; each row's bytes as [[RowAssembler]] gives one
  * row). The delivery side of a fetch path that delivers several rows a cycle (issue 15). */
class RowBeat(p: SpAttenParams) extends Bundle {
  val rows  = Vec(p.keysPerCycle, UInt((p.maxRowBursts * p.burstBits).W))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
}
