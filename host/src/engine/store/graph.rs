//! The local knowledge graph, in the model of
//! `@modelcontextprotocol/server-memory`: entities with observations, and
//! typed relations. Each save writes to it in the save's own transaction:
//! - the project is an entity (type "project");
//! - names in the save's `metadata.entities` are entities (type "entity");
//! - the memory is an observation on each of them, with its id and time;
//! - `metadata.relations` (`[{"from", "to", "type"}]`) are relations.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, StoreError};

/// Most entities or relations one save may name.
pub const MAX_GRAPH_ITEMS: usize = 32;

/// Longest entity name or relation type.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    #[serde(rename = "entityType")]
    pub entity_type: String,
    pub observations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Relation {
    pub from: String,
    pub to: String,
    #[serde(rename = "relationType")]
    pub relation_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

/// What a save names for the graph, checked before anything is written.
#[derive(Debug, Clone, Default)]
pub struct GraphInput {
    pub entities: Vec<String>,
    pub relations: Vec<Relation>,
}

fn invalid(reason: String) -> StoreError {
    StoreError::Invalid {
        field: "metadata",
        reason,
    }
}

fn check_name(what: &str, s: &str) -> Result<String, StoreError> {
    let t = s.trim();
    if t.is_empty() || t.len() > MAX_NAME_LEN || t.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} `{}` must be 1 to {MAX_NAME_LEN} bytes of text",
            crate::engine::text::truncate(s, 40)
        )));
    }
    Ok(t.to_string())
}

/// Reads `entities` and `relations` from a save's metadata.
pub fn graph_input(metadata: &Value) -> Result<GraphInput, StoreError> {
    let mut input = GraphInput::default();
    match metadata.get("entities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() <= MAX_GRAPH_ITEMS => {
            for e in a {
                let name = e
                    .as_str()
                    .ok_or_else(|| invalid("`entities` must be a list of names".into()))?;
                let name = check_name("entity", name)?;
                if !input.entities.contains(&name) {
                    input.entities.push(name);
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "`entities` must be a list of at most {MAX_GRAPH_ITEMS} names"
            )));
        }
    }
    match metadata.get("relations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() <= MAX_GRAPH_ITEMS => {
            for r in a {
                let field = |k: &str| {
                    r.get(k).and_then(Value::as_str).ok_or_else(|| {
                        invalid("each relation must be {\"from\", \"to\", \"type\"} strings".into())
                    })
                };
                input.relations.push(Relation {
                    from: check_name("relation end", field("from")?)?,
                    to: check_name("relation end", field("to")?)?,
                    relation_type: check_name("relation type", field("type")?)?,
                });
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "`relations` must be a list of at most {MAX_GRAPH_ITEMS} objects"
            )));
        }
    }
    Ok(input)
}

/// The observation a memory leaves on its entities.
pub fn observation(content: &str, id: &str, created_at: i64) -> String {
    format!(
        "{content} (mq:{id}, {})",
        crate::engine::text::rfc3339(created_at)
    )
}

fn ensure_entity(conn: &Connection, name: &str, entity_type: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO graph_entities (name, entity_type) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, entity_type],
    )?;
    Ok(())
}

/// Writes one save into the graph, inside the caller's transaction.
pub fn write_save(
    conn: &Connection,
    id: &str,
    project: &str,
    content: &str,
    created_at: i64,
    input: &GraphInput,
) -> rusqlite::Result<()> {
    let obs = observation(content, id, created_at);
    ensure_entity(conn, project, "project")?;
    let mut names = vec![project.to_string()];
    for e in &input.entities {
        ensure_entity(conn, e, "entity")?;
        if !names.contains(e) {
            names.push(e.clone());
        }
    }
    for name in &names {
        conn.execute(
            "INSERT OR IGNORE INTO graph_observations (entity, text, entry_id, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![name, obs, id, created_at],
        )?;
    }
    for r in &input.relations {
        ensure_entity(conn, &r.from, "entity")?;
        ensure_entity(conn, &r.to, "entity")?;
        conn.execute(
            "INSERT OR IGNORE INTO graph_relations (from_entity, to_entity, relation_type, entry_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![r.from, r.to, r.relation_type, id],
        )?;
    }
    Ok(())
}

impl Store {
    /// The whole graph, entities in name order.
    pub fn graph_all(&self) -> Result<Graph, StoreError> {
        self.graph_where("1", "1", &[])
    }

    /// Entities whose name, type or an observation holds `query` (any
    /// case), with their observations and the relations among them.
    pub fn graph_search(&self, query: &str) -> Result<Graph, StoreError> {
        let like = format!(
            "%{}%",
            query
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.graph_where(
            "name LIKE ?1 ESCAPE '\\' OR entity_type LIKE ?1 ESCAPE '\\'
             OR EXISTS (SELECT 1 FROM graph_observations o WHERE o.entity = e.name AND o.text LIKE ?1 ESCAPE '\\')",
            "from_entity IN (SELECT name FROM picked) AND to_entity IN (SELECT name FROM picked)",
            &[&like],
        )
    }

    /// These entities, and every relation touching one of them.
    pub fn graph_open(&self, names: &[String]) -> Result<Graph, StoreError> {
        let list = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        self.graph_where(
            "name IN (SELECT value FROM json_each(?1))",
            "from_entity IN (SELECT name FROM picked) OR to_entity IN (SELECT name FROM picked)",
            &[&list],
        )
    }

    fn graph_where(
        &self,
        entity_filter: &str,
        relation_filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Graph, StoreError> {
        let picked = format!(
            "WITH picked AS (SELECT name, entity_type FROM graph_entities e WHERE {entity_filter})"
        );
        let mut entities: Vec<Entity> = self
            .conn
            .prepare(&format!(
                "{picked} SELECT name, entity_type FROM picked ORDER BY name"
            ))?
            .query_map(args, |r| {
                Ok(Entity {
                    name: r.get(0)?,
                    entity_type: r.get(1)?,
                    observations: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        {
            let mut obs = self.conn.prepare_cached(
                "SELECT text FROM graph_observations WHERE entity = ?1 ORDER BY created_at, id",
            )?;
            for e in &mut entities {
                e.observations = obs
                    .query_map([&e.name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
            }
        }
        let relations = self
            .conn
            .prepare(&format!(
                "{picked} SELECT from_entity, to_entity, relation_type FROM graph_relations
                  WHERE {relation_filter} ORDER BY from_entity, to_entity, relation_type"
            ))?
            .query_map(args, |r| {
                Ok(Relation {
                    from: r.get(0)?,
                    to: r.get(1)?,
                    relation_type: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Graph {
            entities,
            relations,
        })
    }

    /// Adds a graph read from a server-memory JSONL file, in one
    /// transaction. Returns (entities, observations, relations) added.
    pub fn graph_import(&mut self, g: &Graph, now_ms: i64) -> Result<(u64, u64, u64), StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut e, mut o, mut r) = (0, 0, 0);
        for ent in &g.entities {
            let existed = tx
                .query_row(
                    "SELECT 1 FROM graph_entities WHERE name = ?1",
                    [&ent.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !existed {
                tx.execute(
                    "INSERT INTO graph_entities (name, entity_type, origin) VALUES (?1, ?2, 'import')",
                    params![ent.name, ent.entity_type],
                )?;
                e += 1;
            }
            for text in &ent.observations {
                o += tx.execute(
                    "INSERT OR IGNORE INTO graph_observations (entity, text, created_at) VALUES (?1, ?2, ?3)",
                    params![ent.name, text, now_ms],
                )? as u64;
            }
        }
        for rel in &g.relations {
            for end in [&rel.from, &rel.to] {
                tx.execute(
                    "INSERT INTO graph_entities (name, entity_type, origin) VALUES (?1, 'entity', 'import')
                     ON CONFLICT (name) DO NOTHING",
                    [end],
                )?;
            }
            r += tx.execute(
                "INSERT OR IGNORE INTO graph_relations (from_entity, to_entity, relation_type) VALUES (?1, ?2, ?3)",
                params![rel.from, rel.to, rel.relation_type],
            )? as u64;
        }
        tx.commit()?;
        Ok((e, o, r))
    }
}
