"""What the guestbook and the upload form keep (``manage.py migrate`` makes the tables)."""

from django.db import models


class Entry(models.Model):
    name = models.CharField(max_length=100)
    message = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.name}: {self.message[:40]}"


class Upload(models.Model):
    """A file received by the upload form: its name, size and digest (not its bytes)."""

    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes)"
