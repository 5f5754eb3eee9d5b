from django.shortcuts import render
from django.urls import path


def page(request):
    items = [f"item {i}" for i in range(10)]
    return render(request, "page.html", {"title": "Hello from Django", "items": items})


urlpatterns = [path("", page)]
