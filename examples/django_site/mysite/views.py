"""The example site's views: one of each kind a real project has."""

import hashlib
import os
import time

from django import forms
from django.conf import settings
from django.db import connection
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .models import Entry, Upload


@require_safe
def home(request):
    """A template-rendered page; its form carries a CSRF token for /contact/."""
    context = {
        "title": "prefork + Django",
        "features": ["templates", "JSON", "forms", "uploads", "downloads", "streaming"],
        "form": ContactForm(),
    }
    return render(request, "mysite/home.html", context)


@require_safe
def info(request):
    """What Django saw of the request, as JSON."""
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "full_path": request.get_full_path(),
        "query": {key: request.GET.getlist(key) for key in request.GET},
        "host": request.get_host(),
        "scheme": request.scheme,
        "user_agent": request.headers.get("User-Agent", ""),
        "request_id": request.headers.get("X-Request-Id", ""),
        "remote_addr": request.META.get("REMOTE_ADDR", ""),
        "server_software": request.META.get("SERVER_SOFTWARE", ""),
    })


class ContactForm(forms.Form):
    name = forms.CharField(max_length=100)
    email = forms.EmailField()
    message = forms.CharField(widget=forms.Textarea, max_length=2000)


@require_http_methods(["GET", "POST"])
def contact(request):
    """A CSRF-protected form: GET shows it, POST validates it."""
    if request.method == "POST":
        form = ContactForm(request.POST)
        if form.is_valid():
            return render(request, "mysite/contact_done.html", {"data": form.cleaned_data})
        return render(request, "mysite/contact.html", {"form": form}, status=400)
    return render(request, "mysite/contact.html", {"form": ContactForm()})


def _file_summary(upload):
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    return {"filename": upload.name, "size": upload.size, "sha256": digest.hexdigest(),
            "content_type": upload.content_type}


@csrf_exempt
@require_POST
def api_form(request):
    """An API endpoint taking urlencoded or multipart forms (no CSRF: token auth in real life)."""
    return JsonResponse({
        "fields": {key: request.POST.getlist(key) for key in request.POST},
        "files": {key: _file_summary(f) for key, f in request.FILES.items()},
    })


@csrf_exempt
@require_POST
def upload_sha256(request):
    """Reads the whole raw body (request.body) and answers with its digest."""
    body = request.body
    return JsonResponse({
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_length": request.META.get("CONTENT_LENGTH"),
    })


@require_safe
def download(request, name):
    """Sends a file from DOWNLOAD_DIR with FileResponse (so wsgi.file_wrapper)."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise Http404("no such file")
    path = settings.DOWNLOAD_DIR / name
    if not path.is_file():
        raise Http404("no such file")
    return FileResponse(path.open("rb"), as_attachment=True, filename=name)


@require_safe
def stream(request):
    """A StreamingHttpResponse: the body is produced while it is sent."""
    try:
        count = min(int(request.GET.get("n", "5")), 10_000)
        delay = min(float(request.GET.get("delay", "0")), 1.0)
    except ValueError:
        return JsonResponse({"error": "n and delay must be numbers"}, status=400)

    def lines():
        for i in range(count):
            if delay and i:
                time.sleep(delay)
            yield f"line {i}\n"

    return StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")


@require_safe
def counter(request):
    """Counts visits in the (signed cookie) session."""
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    return JsonResponse({"visits": visits})


def boom(request):
    """An unhandled exception: Django answers 500 (DEBUG off) and logs it."""
    raise RuntimeError("boom: this view always fails")


# -- pages that use the database (after `manage.py migrate`) -----------------

class EntryForm(forms.ModelForm):
    class Meta:
        model = Entry
        fields = ["name", "message"]


@require_http_methods(["GET", "POST"])
def guestbook(request):
    """A CSRF-protected form that writes a row; POST redirects back (PRG)."""
    if request.method == "POST":
        form = EntryForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("guestbook")
        status = 400
    else:
        form, status = EntryForm(), 200
    entries = Entry.objects.all()[:50]
    return render(request, "mysite/guestbook.html",
                  {"form": form, "entries": entries, "count": Entry.objects.count()},
                  status=status)


class UploadForm(forms.Form):
    file = forms.FileField()


@require_http_methods(["GET", "POST"])
def upload(request):
    """A CSRF-protected multipart form: the file's digest is computed from
    request.FILES (a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE) and kept."""
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            summary = _file_summary(form.cleaned_data["file"])
            Upload.objects.create(name=summary["filename"], size=summary["size"],
                                  sha256=summary["sha256"])
            return render(request, "mysite/upload.html", {"form": UploadForm(), "done": summary})
        return render(request, "mysite/upload.html", {"form": form}, status=400)
    return render(request, "mysite/upload.html", {"form": UploadForm()})


@require_safe
def db_info(request):
    """Which worker answered, with which database connection, and the row counts."""
    connection.ensure_connection()
    return JsonResponse({
        "pid": os.getpid(),
        "connection": id(connection.connection),
        "entries": Entry.objects.count(),
        "uploads": Upload.objects.count(),
        "database_fds": _open_fds(str(settings.DATABASES["default"]["NAME"])),
    })


def _open_fds(path):
    """The descriptors this process has open on ``path`` (Linux; None elsewhere)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = []
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found.append(int(fd))
        except OSError:
            pass
    return sorted(found)
