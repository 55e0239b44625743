//! Pure policy shared by both backends: the limit stack, name validation (K-01) and the quota and
//! revision arithmetic of a write (K-02). No I/O here, so it is tested table-driven below.

use crate::error::{Field, KvError, Problem, Quota};

/// Namespaces per (tenant, extension): the product's storage API allows 32 per install (compat §6).
pub const DEFAULT_MAX_NAMESPACES: u64 = 32;
/// Keys per namespace: the product's storage API allows 5,120 (compat §6).
pub const DEFAULT_MAX_KEYS_PER_NAMESPACE: u64 = 5_120;
/// Bytes per value: the product's storage API allows 64 KiB (compat §6).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 * 1024;
/// Bytes of keys plus values per (tenant, extension): 256 MiB per install (compat §6).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes per key. Compat names no limit; 512 bytes is ample for path-like keys and keeps index
/// entries (and a guest's ability to bloat them) small.
pub const DEFAULT_MAX_KEY_BYTES: usize = 512;
/// The ceiling a configured key limit is clamped to: a PostgreSQL B-tree row holds at most
/// about 2,700 bytes, shared with the tenant and extension ids and the namespace
/// (2 x [`MAX_ID_BYTES`] + [`MAX_NAMESPACE_BYTES`]), and long keys slow every lookup anyway.
pub const MAX_KEY_BYTES: usize = 1_024;
/// Bytes per namespace name: namespaces are a few labels, not data.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Bytes per tenant or extension id, which come from the execute envelope, not from the guest.
pub const MAX_ID_BYTES: usize = 256;
/// Entries per `list` page when the caller asks for none: the WIT `list-entries` has no limit
/// argument, so this is the page size guests see.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// The most entries one `list` page may ask for.
pub const MAX_LIST_LIMIT: usize = 1_000;
/// A page stops early once its keys and values pass this many bytes (it always holds at least
/// one entry), so a page of 64 KiB values cannot flood a guest's memory.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The configurable limits of one store; every (tenant, extension) gets the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Namespaces holding at least one key, per (tenant, extension).
    pub max_namespaces: u64,
    /// Keys per namespace.
    pub max_keys_per_namespace: u64,
    /// Bytes per value.
    pub max_value_bytes: u64,
    /// Bytes per key, clamped to [`MAX_KEY_BYTES`].
    pub max_key_bytes: usize,
    /// Bytes of keys plus values per (tenant, extension).
    pub max_total_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            max_keys_per_namespace: DEFAULT_MAX_KEYS_PER_NAMESPACE,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

impl Quotas {
    pub(crate) fn key_limit(&self) -> usize {
        self.max_key_bytes.min(MAX_KEY_BYTES)
    }
}

/// Whose data an operation touches: every stored key leads with the tenant id, then the
/// extension id (K-01). Built by the host from the execute envelope, never from guest input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    tenant: String,
    extension: String,
}

impl Scope {
    /// A scope for `tenant` and `extension`.
    ///
    /// # Errors
    /// [`KvError::Invalid`] if either id is empty, over [`MAX_ID_BYTES`] or holds a control
    /// character.
    pub fn new(tenant: impl Into<String>, extension: impl Into<String>) -> Result<Scope, KvError> {
        let (tenant, extension) = (tenant.into(), extension.into());
        check_name(Field::Tenant, &tenant, MAX_ID_BYTES)?;
        check_name(Field::Extension, &extension, MAX_ID_BYTES)?;
        Ok(Scope { tenant, extension })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn extension(&self) -> &str {
        &self.extension
    }
}

/// Refuses the empty string, strings over `max` bytes and strings holding a control character.
/// Control characters are refused rather than escaped: PostgreSQL text cannot hold NUL, and
/// newlines or escapes in keys only ever serve log injection.
pub(crate) fn check_name(field: Field, value: &str, max: usize) -> Result<(), KvError> {
    if value.is_empty() {
        return Err(KvError::Invalid {
            field,
            problem: Problem::Empty,
        });
    }
    check_bound(field, value, max)
}

/// As [`check_name`] but the empty string is allowed (an empty prefix or cursor means none).
pub(crate) fn check_bound(field: Field, value: &str, max: usize) -> Result<(), KvError> {
    if value.len() > max {
        return Err(KvError::Invalid {
            field,
            problem: Problem::TooLong { len: value.len(), max },
        });
    }
    if let Some((at, _)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KvError::Invalid {
            field,
            problem: Problem::ControlCharacter { at },
        });
    }
    Ok(())
}

/// The bytes an entry counts against [`Quotas::max_total_bytes`]: its key plus its value.
pub(crate) fn entry_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// What a (tenant, extension) has stored, kept in one row/record that every write locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Usage {
    /// Bytes of keys plus values.
    pub total_bytes: u64,
    /// Namespaces holding at least one key.
    pub namespaces: u64,
    /// The last revision handed out; revisions come from this one counter per (tenant,
    /// extension), so a key deleted and written again never reuses a revision (no ABA).
    pub last_revision: u64,
}

/// The state of the target key and its namespace, read inside the write's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    pub usage: Usage,
    /// Keys in the target namespace (0 if it holds none, i.e. does not exist).
    pub namespace_keys: u64,
    /// The stored entry's revision and counted bytes, if the key exists.
    pub existing: Option<(u64, u64)>,
}

/// What a write must store, once the policy has accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub usage: Usage,
    pub namespace_keys: u64,
    /// The written entry's revision (0 for a delete).
    pub revision: u64,
}

fn check_expected(expected: Option<u64>, existing: Option<(u64, u64)>) -> Result<(), KvError> {
    let stored = existing.map_or(0, |(revision, _)| revision);
    match expected {
        Some(expected) if expected != stored => Err(KvError::Conflict { expected, stored }),
        _ => Ok(()),
    }
}

/// Checks a put of `new_bytes` (key plus value) against the revision the caller expects and the
/// quotas, and computes the new counters. `expected = Some(0)` means "only if absent".
pub(crate) fn plan_put(
    quotas: &Quotas,
    current: Current,
    new_bytes: u64,
    expected: Option<u64>,
) -> Result<Plan, KvError> {
    check_expected(expected, current.existing)?;
    let Current {
        usage,
        namespace_keys,
        existing,
    } = current;
    let mut next = usage;
    let mut namespace_keys_after = namespace_keys;
    if existing.is_none() {
        if namespace_keys == 0 {
            next.namespaces += 1;
            if next.namespaces > quotas.max_namespaces {
                return Err(KvError::QuotaExceeded {
                    quota: Quota::Namespaces,
                    limit: quotas.max_namespaces,
                    requested: next.namespaces,
                });
            }
        }
        namespace_keys_after += 1;
        if namespace_keys_after > quotas.max_keys_per_namespace {
            return Err(KvError::QuotaExceeded {
                quota: Quota::KeysPerNamespace,
                limit: quotas.max_keys_per_namespace,
                requested: namespace_keys_after,
            });
        }
    }
    let old_bytes = existing.map_or(0, |(_, bytes)| bytes);
    next.total_bytes = usage.total_bytes.saturating_sub(old_bytes).saturating_add(new_bytes);
    // Only growth is refused: after an operator lowers the quota, shrinking writes still work.
    if new_bytes > old_bytes && next.total_bytes > quotas.max_total_bytes {
        return Err(KvError::QuotaExceeded {
            quota: Quota::TotalBytes,
            limit: quotas.max_total_bytes,
            requested: next.total_bytes,
        });
    }
    next.last_revision = usage
        .last_revision
        .checked_add(1)
        .ok_or_else(|| KvError::backend("policy", "revision counter exhausted"))?;
    Ok(Plan {
        usage: next,
        namespace_keys: namespace_keys_after,
        revision: next.last_revision,
    })
}

/// Checks a delete against the expected revision and computes the new counters; `None` when
/// there is nothing to delete.
pub(crate) fn plan_delete(current: Current, expected: Option<u64>) -> Result<Option<Plan>, KvError> {
    check_expected(expected, current.existing)?;
    let Some((_, bytes)) = current.existing else {
        return Ok(None);
    };
    let mut next = current.usage;
    next.total_bytes = next.total_bytes.saturating_sub(bytes);
    let namespace_keys = current.namespace_keys.saturating_sub(1);
    if namespace_keys == 0 {
        next.namespaces = next.namespaces.saturating_sub(1);
    }
    Ok(Some(Plan {
        usage: next,
        namespace_keys,
        revision: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas() -> Quotas {
        Quotas {
            max_namespaces: 2,
            max_keys_per_namespace: 3,
            max_value_bytes: 10,
            max_key_bytes: 8,
            max_total_bytes: 100,
        }
    }

    fn current(total: u64, namespaces: u64, namespace_keys: u64, existing: Option<(u64, u64)>) -> Current {
        Current {
            usage: Usage {
                total_bytes: total,
                namespaces,
                last_revision: 7,
            },
            namespace_keys,
            existing,
        }
    }

    #[test]
    fn names_are_checked() {
        let cases: &[(&str, usize, Option<Problem>)] = &[
            ("a", 8, None),
            ("a:b", 8, None),
            ("../otherTenant/x", 16, None),
            ("ünï", 8, None),
            ("", 8, Some(Problem::Empty)),
            ("123456789", 8, Some(Problem::TooLong { len: 9, max: 8 })),
            ("a\0b", 8, Some(Problem::ControlCharacter { at: 1 })),
            ("a\nb", 8, Some(Problem::ControlCharacter { at: 1 })),
            ("é\u{7f}", 8, Some(Problem::ControlCharacter { at: 2 })),
            ("\u{85}", 8, Some(Problem::ControlCharacter { at: 0 })),
        ];
        for (value, max, want) in cases {
            let got = match check_name(Field::Key, value, *max) {
                Ok(()) => None,
                Err(KvError::Invalid {
                    field: Field::Key,
                    problem,
                }) => Some(problem),
                Err(other) => panic!("{value:?}: unexpected {other:?}"),
            };
            assert_eq!(got, *want, "{value:?}");
        }
        assert!(check_bound(Field::Cursor, "", 8).is_ok());
    }

    #[test]
    fn scope_ids_are_checked() {
        assert!(Scope::new("t", "e").is_ok());
        assert!(matches!(
            Scope::new("", "e"),
            Err(KvError::Invalid {
                field: Field::Tenant,
                problem: Problem::Empty
            })
        ));
        assert!(matches!(
            Scope::new("t", "e\0"),
            Err(KvError::Invalid {
                field: Field::Extension,
                problem: Problem::ControlCharacter { at: 1 }
            })
        ));
        assert!(matches!(
            Scope::new("t".repeat(MAX_ID_BYTES + 1), "e"),
            Err(KvError::Invalid {
                field: Field::Tenant,
                problem: Problem::TooLong { .. }
            })
        ));
    }

    #[test]
    fn key_limit_is_clamped() {
        let q = Quotas {
            max_key_bytes: usize::MAX,
            ..Quotas::default()
        };
        assert_eq!(q.key_limit(), MAX_KEY_BYTES);
        assert_eq!(Quotas::default().key_limit(), DEFAULT_MAX_KEY_BYTES);
    }

    #[test]
    fn put_plans() {
        // (current, new bytes, expected) -> Ok((total, namespaces, namespace keys)) or the quota refused.
        type Case = (Current, u64, Option<u64>, Result<(u64, u64, u64), Quota>);
        let cases: &[Case] = &[
            // New key in a new namespace.
            (current(0, 0, 0, None), 10, None, Ok((10, 1, 1))),
            // New key in an existing namespace.
            (current(10, 1, 1, None), 10, None, Ok((20, 1, 2))),
            // Overwrite: bytes replaced, counts unchanged.
            (current(30, 1, 2, Some((3, 20))), 5, None, Ok((15, 1, 2))),
            // Third namespace.
            (current(10, 2, 0, None), 1, None, Err(Quota::Namespaces)),
            // Fourth key in a namespace.
            (current(10, 1, 3, None), 1, None, Err(Quota::KeysPerNamespace)),
            // Overwriting in a full namespace is fine.
            (current(10, 2, 3, Some((1, 5))), 6, None, Ok((11, 2, 3))),
            // Exactly at the byte quota is fine; one over is not.
            (current(90, 1, 1, None), 10, None, Ok((100, 1, 2))),
            (current(91, 1, 1, None), 10, None, Err(Quota::TotalBytes)),
            // Already over a lowered quota: shrinking is allowed, growing is not.
            (current(150, 1, 1, Some((1, 50))), 40, None, Ok((140, 1, 1))),
            (current(150, 1, 1, Some((1, 50))), 51, None, Err(Quota::TotalBytes)),
        ];
        for (i, (cur, bytes, expected, want)) in cases.iter().enumerate() {
            let got = plan_put(&quotas(), *cur, *bytes, *expected);
            match (got, want) {
                (Ok(plan), Ok((total, namespaces, keys))) => {
                    assert_eq!(
                        (plan.usage.total_bytes, plan.usage.namespaces, plan.namespace_keys),
                        (*total, *namespaces, *keys),
                        "case {i}"
                    );
                    assert_eq!(plan.revision, 8, "case {i}");
                    assert_eq!(plan.usage.last_revision, 8, "case {i}");
                }
                (Err(KvError::QuotaExceeded { quota, .. }), Err(want)) => assert_eq!(quota, *want, "case {i}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn expected_revisions() {
        let absent = current(0, 0, 0, None);
        let present = current(10, 1, 1, Some((5, 10)));
        assert!(
            plan_put(&quotas(), absent, 1, Some(0)).is_ok(),
            "Some(0) creates an absent key"
        );
        assert!(matches!(
            plan_put(&quotas(), present, 1, Some(0)),
            Err(KvError::Conflict { expected: 0, stored: 5 })
        ));
        assert!(matches!(
            plan_put(&quotas(), absent, 1, Some(5)),
            Err(KvError::Conflict { expected: 5, stored: 0 })
        ));
        assert!(plan_put(&quotas(), present, 1, Some(5)).is_ok());
        assert!(matches!(
            plan_put(&quotas(), present, 1, Some(4)),
            Err(KvError::Conflict { expected: 4, stored: 5 })
        ));
        assert!(matches!(
            plan_delete(present, Some(4)),
            Err(KvError::Conflict { expected: 4, stored: 5 })
        ));
        assert!(matches!(
            plan_delete(absent, Some(1)),
            Err(KvError::Conflict { expected: 1, stored: 0 })
        ));
        assert_eq!(plan_delete(absent, None).unwrap(), None);
    }

    #[test]
    fn delete_plans() {
        let plan = plan_delete(current(30, 2, 2, Some((5, 10))), None).unwrap().unwrap();
        assert_eq!(
            (plan.usage.total_bytes, plan.usage.namespaces, plan.namespace_keys),
            (20, 2, 1)
        );
        // The last key of a namespace frees the namespace.
        let plan = plan_delete(current(30, 2, 1, Some((5, 10))), Some(5)).unwrap().unwrap();
        assert_eq!(
            (plan.usage.total_bytes, plan.usage.namespaces, plan.namespace_keys),
            (20, 1, 0)
        );
        assert_eq!(plan.usage.last_revision, 7, "a delete hands out no revision");
    }
}
