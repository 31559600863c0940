//! Armada's `armada.v1.Tables` service: create, delete and list tables.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Context;
use crate::pb::armada::tables_server::Tables;
use crate::pb::armada::{
    CreateTableRequest, CreateTableResponse, DeleteTableRequest, DeleteTableResponse,
    ListTablesRequest, ListTablesResponse, TableInfo,
};

pub(crate) struct TablesService {
    pub ctx: Arc<Context>,
}

impl TablesService {
    /// A follower cluster's tables mirror the leader cluster's.
    fn refuse_on_follower(&self) -> Result<(), Status> {
        if self.ctx.upstream.is_some() {
            return Err(Status::failed_precondition(
                "armada: this is a follower cluster; create and delete tables on the leader cluster",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Tables for TablesService {
    async fn create(
        &self,
        request: Request<CreateTableRequest>,
    ) -> Result<Response<CreateTableResponse>, Status> {
        self.refuse_on_follower()?;
        let name = request.into_inner().name;
        let max = self.ctx.max_tables;
        if self.ctx.registry.list().await?.len() >= max {
            return Err(Status::resource_exhausted(format!(
                "armada: this cluster has the most tables it allows ({max}, --tables.max)"
            )));
        }
        let epoch = self.ctx.registry.create(&name).await?;
        Ok(Response::new(CreateTableResponse {
            table: Some(TableInfo { name, epoch }),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteTableRequest>,
    ) -> Result<Response<DeleteTableResponse>, Status> {
        self.refuse_on_follower()?;
        let name = request.into_inner().name;
        if name == self.ctx.default_table {
            return Err(Status::failed_precondition(format!(
                "armada: table {name:?} is this node's default table"
            )));
        }
        self.ctx.registry.delete(&name).await?;
        Ok(Response::new(DeleteTableResponse {}))
    }

    async fn list(
        &self,
        _request: Request<ListTablesRequest>,
    ) -> Result<Response<ListTablesResponse>, Status> {
        let tables = self
            .ctx
            .registry
            .list()
            .await?
            .into_iter()
            .map(|(name, epoch)| TableInfo { name, epoch })
            .collect();
        Ok(Response::new(ListTablesResponse { tables }))
    }
}
