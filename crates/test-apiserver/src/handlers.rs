//! What each request (but a watch) does to the store: list, get, create, replace, patch and
//! delete, with the real server's rules for namespaces, the status subresource, server-owned
//! metadata and the resourceVersion precondition.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::patch::Patch;
use crate::resource::{convert, meta_str, metadata_mut};
use crate::selectors::Filter;
use crate::server::{json_response, parse_rv, Body, Shared, Target};
use crate::store::Store;

/// A response carrying a stored object, in the form the request asked for.
fn answer(code: StatusCode, filter: &Filter, stored: &Value) -> Response<Body> {
    let view = convert(stored, filter.res.stored(), filter.res);
    json_response(code, &filter.output(view))
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

pub(crate) fn list(
    shared: &Arc<Shared>,
    filter: &Filter,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let rv = query.get("resourceVersion").filter(|v| !v.is_empty());
    let version_match = query.get("resourceVersionMatch").filter(|v| !v.is_empty());
    let store = shared.store.lock().unwrap();
    let (rv, objects) = match (version_match.map(String::as_str), rv) {
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ))
        }
        (Some("Exact"), Some(rv)) => {
            let rv = parse_rv(rv)?;
            if rv < store.compacted {
                return Err(ApiError::expired(rv, store.compacted));
            }
            if rv >= store.rv {
                (store.rv, store.objects_of(filter.res).cloned().collect())
            } else {
                (rv, store.objects_at(filter.res, rv))
            }
        }
        (Some("NotOlderThan") | None, rv) => {
            if let Some(rv) = rv {
                parse_rv(rv)?;
            }
            (store.rv, store.objects_of(filter.res).cloned().collect::<Vec<_>>())
        }
        (Some(other), _) => {
            return Err(ApiError::invalid(format!(
                "resourceVersionMatch: Unsupported value: {other:?}"
            )))
        }
    };
    drop(store);
    let items: Vec<Value> = objects.iter().filter_map(|o| filter.project(o)).collect();
    let (api_version, kind) = if filter.meta_only {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadataList".to_string(),
        )
    } else {
        (filter.res.api_version(), format!("{}List", filter.res.kind))
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    ))
}

pub(crate) fn get(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
) -> Result<Response<Body>, ApiError> {
    let store = shared.store.lock().unwrap();
    let stored = store
        .objects
        .get(&target.key(name))
        .ok_or_else(|| ApiError::not_found(target.res, name))?;
    Ok(answer(StatusCode::OK, filter, stored))
}

pub(crate) fn delete(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
) -> Result<Response<Body>, ApiError> {
    let mut store = shared.store.lock().unwrap();
    let deleted = store
        .remove(&target.key(name))
        .ok_or_else(|| ApiError::not_found(target.res, name))?;
    Ok(answer(StatusCode::OK, filter, &deleted))
}

/// Checks the namespace in the body against the URL's, and fills it in.
fn check_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    if !target.res.namespaced {
        metadata_mut(object).remove("namespace");
        return Ok(());
    }
    let namespace = target.namespace.as_deref().unwrap_or("default");
    match meta_str(object, "namespace") {
        Some(ns) if ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata_mut(object).insert("namespace".into(), namespace.into());
            Ok(())
        }
    }
}

pub(crate) fn create(
    shared: &Arc<Shared>,
    target: &Target,
    filter: &Filter,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if target.res.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let mut object = parse_object(body)?;
    check_namespace(target, &mut object)?;
    if target.res.status {
        // The status subresource owns the status: a create starts without one.
        object.as_object_mut().expect("an object").remove("status");
    }
    let object = convert(&object, target.res, target.res.stored());
    let created =
        shared
            .store
            .lock()
            .unwrap()
            .create(target.res, target.namespace.as_deref(), object)?;
    Ok(answer(StatusCode::CREATED, filter, &created))
}

/// Applies a write to the object at `target`: `new` is the wanted object in the form of the
/// request. Checks the resourceVersion precondition, keeps what the request may not change
/// (status on the object, everything but status on `/status`, server-owned metadata), stores
/// and returns the stored object.
fn update(
    store: &mut Store,
    target: &Target,
    name: &str,
    old_stored: &Value,
    new: Value,
) -> Result<Value, ApiError> {
    let res = target.res;
    let old = convert(old_stored, res.stored(), res);
    if let Some(rv) = meta_str(&new, "resourceVersion") {
        if Some(rv) != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(res, name));
        }
    }
    let mut result = if target.status {
        let mut result = old.clone();
        let map = result.as_object_mut().expect("an object");
        match new.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
        result
    } else {
        let mut result = new;
        if res.status {
            let map = result.as_object_mut().expect("an object");
            match old.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
        result
    };
    {
        let old_meta = &old["metadata"];
        let metadata = metadata_mut(&mut result);
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match old_meta.get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        metadata.remove("generation");
    }
    Ok(store.write(res, convert(&result, res, res.stored()), false))
}

pub(crate) fn replace(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let mut object = parse_object(body)?;
    match meta_str(&object, "name") {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    check_namespace(target, &mut object)?;
    let mut store = shared.store.lock().unwrap();
    let old = store
        .objects
        .get(&target.key(name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(target.res, name))?;
    let stored = update(&mut store, target, name, &old, object)?;
    Ok(answer(StatusCode::OK, filter, &stored))
}

pub(crate) fn patch(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let patch = Patch::parse(content_type, body)?;
    let mut store = shared.store.lock().unwrap();
    let Some(old) = store.objects.get(&target.key(name)).cloned() else {
        // Server-side apply creates.
        let mut object = match patch {
            Patch::Apply(object) if !target.status => object,
            _ => return Err(ApiError::not_found(target.res, name)),
        };
        if !object.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        check_namespace(target, &mut object)?;
        metadata_mut(&mut object).insert("name".into(), name.into());
        if target.res.status {
            object.as_object_mut().expect("an object").remove("status");
        }
        let object = convert(&object, target.res, target.res.stored());
        let created = store.create(target.res, target.namespace.as_deref(), object)?;
        return Ok(answer(StatusCode::CREATED, filter, &created));
    };
    let mut new = convert(&old, target.res.stored(), target.res);
    patch.apply(&mut new)?;
    if !new.is_object() {
        return Err(ApiError::invalid("the patched object is not an object"));
    }
    let stored = update(&mut store, target, name, &old, new)?;
    Ok(answer(StatusCode::OK, filter, &stored))
}
