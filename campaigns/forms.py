"""Admin forms: creatives with checked images, and the bulk ZIP upload."""

from __future__ import annotations

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils.text import slugify

from campaigns.conf import app_setting
from campaigns.models import Campaign, Creative
from campaigns.services import CreativeImageError, check_creative_image, fetch_creative_image
from lookalike import catalog


class CreativeForm(forms.ModelForm):
    """Checks the image when the form is submitted: a bad file is an error on the form, not a failed task."""

    # A plain file field: the size limit is checked before Pillow reads anything.
    image = forms.FileField(
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/*"}),
        help_text="JPEG, PNG, WebP or GIF.",
    )
    slug = forms.SlugField(required=False, max_length=100, help_text="Empty: made from the name.")
    # A typed address without a scheme is https (Django 6's default, said explicitly).
    image_url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text=Creative._meta.get_field("image_url").help_text,
    )

    class Meta:
        model = Creative
        fields = ["name", "slug", "position", "image", "image_url", "headline"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_data: bytes | None = None
        max_mb = app_setting("CREATIVE_MAX_BYTES") / 1e6
        self.fields["image"].help_text = f"JPEG, PNG, WebP or GIF, at most {max_mb:.0f} MB."

    def clean_image(self):
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):
            max_bytes = app_setting("CREATIVE_MAX_BYTES")
            if image.size is not None and image.size > max_bytes:
                raise forms.ValidationError(
                    f"The file is {image.size / 1e6:.1f} MB; "
                    f"creatives may be at most {max_bytes / 1e6:.0f} MB."
                )
            data = image.read()
            try:
                check_creative_image(data)
            except CreativeImageError as error:
                raise forms.ValidationError(error.reason) from None
            self.image_data = data
        return image

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        url = cleaned.get("image_url")
        has_image = bool(cleaned.get("image")) if "image" in cleaned else bool(self.instance.image)
        url_changed = "image_url" in self.changed_data
        if self.image_data is None and url and (url_changed or not has_image):
            try:
                self.image_data = fetch_creative_image(url)
            except CreativeImageError as error:
                self.add_error("image_url", error.reason)
                return cleaned
            try:
                check_creative_image(self.image_data)
            except CreativeImageError as error:
                self.add_error("image_url", error.reason)
                return cleaned
        if self.image_data is None and not has_image:
            raise forms.ValidationError("Upload the ad image or give its URL.")
        if not cleaned.get("slug"):
            cleaned["slug"] = slugify(cleaned.get("name") or "")[:90] or f"ad-{cleaned.get('position') or 1}"
            self.instance.slug = cleaned["slug"]
        return cleaned


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name", "slug", "status", "starts_at", "ends_at", "fallback_url",
            "store", "categories", "min_price", "max_price", "in_stock_only", "product_count",
            "excluded_products", "match",
            "headline", "intro", "columns", "show_prices",
            "control_share_pct", "control_kind", "control_category",
        ]  # fmt: skip


class BulkUploadForm(forms.Form):
    """A ZIP of ad images → one draft campaign per image, sharing these settings."""

    archive = forms.FileField(
        help_text="A ZIP archive of ad images; each becomes a campaign named after its file."
    )
    store = forms.ModelChoiceField(queryset=catalog.store_model()._default_manager.all(), required=False)
    categories = forms.ModelMultipleChoiceField(
        queryset=catalog.category_model()._default_manager.all(), required=False
    )
    min_price = forms.DecimalField(required=False, max_digits=12, decimal_places=2)
    max_price = forms.DecimalField(required=False, max_digits=12, decimal_places=2)
    in_stock_only = forms.BooleanField(required=False, initial=True)
    product_count = forms.IntegerField(min_value=1, max_value=100, initial=24)
    status = forms.ChoiceField(choices=Campaign.Status.choices[:2], initial=Campaign.Status.DRAFT)

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("min_price"), cleaned.get("max_price")
        if low is not None and high is not None and low > high:
            self.add_error("max_price", "The highest price is below the lowest.")
        archive = cleaned.get("archive")
        if archive is not None and archive.size > app_setting("BULK_MAX_TOTAL_BYTES"):
            self.add_error(
                "archive", f"The archive is larger than {app_setting('BULK_MAX_TOTAL_BYTES') / 1e6:.0f} MB."
            )
        return cleaned

    def campaign_defaults(self) -> dict:
        data = self.cleaned_data
        return {
            "store": data["store"],
            "categories": list(data["categories"]),
            "min_price": data["min_price"],
            "max_price": data["max_price"],
            "in_stock_only": data["in_stock_only"],
            "product_count": data["product_count"],
            "status": data["status"],
        }
