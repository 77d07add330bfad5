//! WHERE clauses with numbered placeholders, built at run time.
//!
//! sqlx's `QueryBuilder` would do this, but for the `Any` driver it writes `?` placeholders, which
//! PostgreSQL rejects; `$1, $2, …` is what both SQLite and PostgreSQL accept.

use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

/// A bound value; the store binds only text and integers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_string())
    }
}

impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}

/// Conditions joined by AND, and the values their placeholders stand for.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// Adds a value and returns its placeholder, for a clause that uses it (possibly twice).
    pub fn param(&mut self, value: impl Into<Param>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }

    /// Adds a clause; it is parenthesized, so an OR inside stays inside.
    pub fn and(&mut self, clause: impl Into<String>) {
        self.clauses.push(format!("({})", clause.into()));
    }

    /// `column = value`.
    pub fn eq(&mut self, column: &str, value: impl Into<Param>) {
        let p = self.param(value);
        self.and(format!("{column} = {p}"));
    }

    /// `since <= column < until`, each side only when given.
    pub fn range(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        if let Some(since) = since {
            let p = self.param(since);
            self.and(format!("{column} >= {p}"));
        }
        if let Some(until) = until {
            let p = self.param(until);
            self.and(format!("{column} < {p}"));
        }
    }

    /// `WHERE a AND b …`, or nothing when there is no condition.
    pub fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// Binds the values in placeholder order.
    pub fn bind<'q>(&self, mut query: Query<'q, Any, AnyArguments<'q>>) -> Query<'q, Any, AnyArguments<'q>> {
        for p in &self.params {
            query = match p {
                Param::Text(s) => query.bind(s.clone()),
                Param::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut c = Conditions::default();
        assert_eq!(c.where_clause(), "");
        c.eq("status", "completed");
        let n = c.param("+15550100");
        c.and(format!("from_number = {n} OR to_number = {n}"));
        c.range("started_at", Some(10), Some(20));
        assert_eq!(
            c.where_clause(),
            "WHERE (status = $1) AND (from_number = $2 OR to_number = $2) AND (started_at >= $3) AND (started_at < $4)"
        );
        assert_eq!(
            c.params,
            [
                Param::from("completed"),
                Param::from("+15550100"),
                Param::Int(10),
                Param::Int(20)
            ]
        );
    }
}
