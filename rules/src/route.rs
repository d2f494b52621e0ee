//! Route templates derived from raw paths.
//!
//! Rules that group or count per route need `/users/17` and `/users/18` to be one route. When
//! the input does not name the route, [`template`] replaces id-like path segments with `{id}`:
//! integers, UUIDs, hex strings of 16 or more digits, and dates. Anything else is kept, because
//! replacing words would merge routes that differ in meaning (`/users/me` against `/users/17`).

/// Returns the route template of a raw path (no query string).
///
/// ```
/// assert_eq!(feedloop_rules::route::template("/users/42/orders"), "/users/{id}/orders");
/// ```
pub fn template(path: &str) -> String {
    if !path.split('/').any(is_id_like) {
        return path.to_string();
    }
    let mut route = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            route.push('/');
        }
        if is_id_like(segment) {
            route.push_str("{id}");
        } else {
            route.push_str(segment);
        }
    }
    route
}

/// Returns true for a path segment that names one object rather than a kind of resource.
pub fn is_id_like(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    is_uuid(bytes) || is_long_hex(bytes) || is_date(bytes)
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn is_long_hex(bytes: &[u8]) -> bool {
    bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit)
}

/// Dates as `2015-05-17`, or a date and time that starts that way (`2015-05-17T10:05:03Z`).
fn is_date(bytes: &[u8]) -> bool {
    bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
        && bytes[10..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b":.+-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_replaces_id_like_segments() {
        let cases = [
            ("/", "/"),
            ("/users", "/users"),
            ("/users/42", "/users/{id}"),
            ("/users/me", "/users/me"),
            (
                "/v1/orders/0f8fad5b-d9cb-469f-a165-70867728950e/items",
                "/v1/orders/{id}/items",
            ),
            ("/blobs/deadbeefdeadbeef00", "/blobs/{id}"),
            ("/blobs/deadbeef", "/blobs/deadbeef"),
            ("/reports/2015-05-17", "/reports/{id}"),
            ("/reports/2015-05-17T10:05:03Z/x", "/reports/{id}/x"),
            ("/a//7/", "/a//{id}/"),
            ("/v2/items", "/v2/items"),
        ];
        for (path, route) in cases {
            assert_eq!(template(path), route, "path {path}");
        }
    }
}
