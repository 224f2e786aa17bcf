"""Query service handlers for analysts: SQL with Arrow, extended attributes,
Parquet export. Each parses the request, calls the archive, maps errors."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from dicomvault.archive.api.grpc_server import QueryServicer, streaming, unary
from dicomvault.archive.api.security import current_principal
from dicomvault.archive.index.extended import ExtendedAttribute
from dicomvault.archive.sql import rows_to_json
from dicomvault.proto import analytics_pb2, query_pb2


def _attribute(a: ExtendedAttribute) -> analytics_pb2.ExtendedAttribute:
    return analytics_pb2.ExtendedAttribute(
        tag=a.tag,
        keyword=a.keyword,
        vr=a.vr,
        column=a.column,
        sql_type=a.sql_type,
        filled=a.filled,
        seconds=a.seconds,
    )


class AnalyticsServicer(QueryServicer):  # type: ignore[misc]
    """Query service: read-only SQL (rows or Arrow IPC), extended query
    attributes and Parquet export."""

    @streaming  # type: ignore[untyped-decorator]
    def Sql(  # noqa: N802
        self, request: query_pb2.SqlRequest, context: grpc.ServicerContext
    ) -> Iterator[query_pb2.SqlBatch]:
        batches = self.archive.sql_as(
            current_principal(), request.sql, request.batch_rows, request.arrow
        )
        for batch in batches:
            yield query_pb2.SqlBatch(
                columns=batch.columns,
                column_types=batch.column_types,
                rows_json="" if request.arrow else rows_to_json(batch.rows),
                arrow_ipc=batch.arrow_ipc,
            )

    @unary  # type: ignore[untyped-decorator]
    def AddExtendedAttribute(  # noqa: N802
        self,
        request: analytics_pb2.AddExtendedAttributeRequest,
        context: grpc.ServicerContext,
    ) -> analytics_pb2.ExtendedAttribute:
        return _attribute(
            self.archive.add_extended_attribute(request.attribute, request.vr)
        )

    @unary  # type: ignore[untyped-decorator]
    def ListExtendedAttributes(  # noqa: N802
        self,
        request: analytics_pb2.ListExtendedAttributesRequest,
        context: grpc.ServicerContext,
    ) -> analytics_pb2.ListExtendedAttributesResponse:
        return analytics_pb2.ListExtendedAttributesResponse(
            attributes=[_attribute(a) for a in self.archive.extended_attributes()]
        )

    @unary  # type: ignore[untyped-decorator]
    def ExportParquet(  # noqa: N802
        self,
        request: analytics_pb2.ExportParquetRequest,
        context: grpc.ServicerContext,
    ) -> analytics_pb2.ExportParquetResponse:
        tables, seconds = self.archive.export_parquet(request.url)
        return analytics_pb2.ExportParquetResponse(
            tables=[
                analytics_pb2.ExportedTable(table=t.table, rows=t.rows, url=t.url)
                for t in tables
            ],
            seconds=seconds,
        )
