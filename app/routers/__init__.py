"""HTTP only: who may call each route, parse (a streamed multipart body too), call a service,
schedule background work once it is committed, shape the response: JSON for the API, HTML
for the operator console and the docs pages."""
