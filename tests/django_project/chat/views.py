"""HTTP views of the sample project."""

from chat import version
from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    """The page the runserver tests fetch; shows ``chat.version.VERSION``."""
    return HttpResponse(f"testproject index v{version.VERSION}")


def whoami(request: HttpRequest) -> HttpResponse:
    """The logged-in user's name, as Django's HTTP stack sees it."""
    user = request.user
    return HttpResponse(user.get_username() if user.is_authenticated else "anonymous")


def visit(request: HttpRequest) -> HttpResponse:
    """Store something in the session so an anonymous visitor gets a cookie."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(f"visits {request.session['visits']}")
