"""HTTP only: parse (a streamed multipart body too), call a service, schedule background
work once it is committed, shape the response."""
