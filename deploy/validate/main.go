// Command validate checks rendered Kubernetes manifests offline, the way an API server would decode them:
//
//   - built-in kinds are decoded strictly (unknown fields, duplicate fields and wrong types are errors)
//     into the typed k8s.io/api structs registered in client-go's scheme (the Kubernetes release pinned in
//     go.mod), then given the structural checks the API server applies to every object (names, labels,
//     selectors matching the pod template, unique container and port names, requests ≤ limits, …);
//   - custom resources (KEDA ScaledObject, cert-manager Certificate, Prometheus Operator ServiceMonitor and
//     PrometheusRule) are validated against the openAPIV3Schema of their CRD (*.crd files that
//     fetch.sh materialises from the pinned Go module releases into .tools/crds/) with the apiextensions-apiserver validator, and fields the
//     schema does not know are reported (the API server would prune them silently);
//   - an object of any other kind is an error: nothing passes unchecked.
//
// Usage: validate [-crds DIR] FILE... (or - for stdin). Each FILE is a multi-document YAML stream, e.g.
// the output of `helm template`. Prints one line per problem and exits 1 when there is any.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

type crdSchema struct {
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
	namespaced bool
}

func loadCRDs(dir string) (map[schema.GroupVersionKind]crdSchema, error) {
	out := map[schema.GroupVersionKind]crdSchema{}
	files, err := filepath.Glob(filepath.Join(dir, "*.crd"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: not a CustomResourceDefinition", f)
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				return nil, fmt.Errorf("%s: version %s has no openAPIV3Schema", f, v.Name)
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			validator, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			structural, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			out[gvk] = crdSchema{validator, structural, crd.Spec.Scope == apiextv1.NamespaceScoped}
		}
	}
	return out, nil
}

// checkMeta applies the API server's object-metadata rules (name, labels, annotations).
func checkMeta(m metav1.ObjectMeta, namespaced bool) []string {
	var errs []string
	if m.Name == "" {
		errs = append(errs, "metadata.name is required")
	} else {
		for _, e := range utilvalidation.IsDNS1123Subdomain(m.Name) {
			errs = append(errs, "metadata.name: "+e)
		}
	}
	for k, v := range m.Labels {
		for _, e := range utilvalidation.IsQualifiedName(k) {
			errs = append(errs, fmt.Sprintf("metadata.labels[%s]: %s", k, e))
		}
		for _, e := range utilvalidation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Sprintf("metadata.labels[%s]: %s", k, e))
		}
	}
	for k := range m.Annotations {
		for _, e := range utilvalidation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, fmt.Sprintf("metadata.annotations[%s]: %s", k, e))
		}
	}
	_ = namespaced
	return errs
}

func checkSelector(path string, sel *metav1.LabelSelector, podLabels map[string]string) []string {
	if sel == nil {
		return []string{path + ".selector is required"}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return []string{fmt.Sprintf("%s.selector: %v", path, err)}
	}
	if s.Empty() {
		return []string{path + ".selector must not be empty"}
	}
	if podLabels != nil && !s.Matches(labels.Set(podLabels)) {
		return []string{fmt.Sprintf("%s.selector %s does not match the pod template's labels", path, s)}
	}
	return nil
}

func checkContainers(path string, cs []corev1.Container, volumes, readOnlyKinds map[string]bool) []string {
	var errs []string
	names := map[string]bool{}
	for i, c := range cs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if c.Name == "" {
			errs = append(errs, p+".name is required")
		}
		for _, e := range utilvalidation.IsDNS1123Label(c.Name) {
			errs = append(errs, p+".name: "+e)
		}
		if names[c.Name] {
			errs = append(errs, p+".name is not unique: "+c.Name)
		}
		names[c.Name] = true
		if c.Image == "" || strings.Contains(c.Image, " ") {
			errs = append(errs, fmt.Sprintf("%s.image %q is not an image reference", p, c.Image))
		}
		ports := map[string]bool{}
		for j, port := range c.Ports {
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				errs = append(errs, fmt.Sprintf("%s.ports[%d].containerPort %d out of range", p, j, port.ContainerPort))
			}
			if port.Name != "" {
				for _, e := range utilvalidation.IsValidPortName(port.Name) {
					errs = append(errs, fmt.Sprintf("%s.ports[%d].name: %s", p, j, e))
				}
				if ports[port.Name] {
					errs = append(errs, fmt.Sprintf("%s.ports[%d].name is not unique: %s", p, j, port.Name))
				}
				ports[port.Name] = true
			}
		}
		for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if probe == nil {
				continue
			}
			n := 0
			if probe.Exec != nil {
				n++
			}
			if probe.HTTPGet != nil {
				n++
				if probe.HTTPGet.Port.Type == 1 && !ports[probe.HTTPGet.Port.StrVal] {
					errs = append(errs, fmt.Sprintf("%s: probe port %q is not a named port of the container", p, probe.HTTPGet.Port.StrVal))
				}
			}
			if probe.TCPSocket != nil {
				n++
				if probe.TCPSocket.Port.Type == 1 && !ports[probe.TCPSocket.Port.StrVal] {
					errs = append(errs, fmt.Sprintf("%s: probe port %q is not a named port of the container", p, probe.TCPSocket.Port.StrVal))
				}
			}
			if probe.GRPC != nil {
				n++
			}
			if n != 1 {
				errs = append(errs, fmt.Sprintf("%s: a probe needs exactly one handler, has %d", p, n))
			}
		}
		for name, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				errs = append(errs, fmt.Sprintf("%s.resources: request %s=%s exceeds the limit %s", p, name, req.String(), lim.String()))
			}
		}
		for name, lim := range c.Resources.Limits {
			if strings.Contains(string(name), "/") && !strings.HasPrefix(string(name), "kubernetes.io/") {
				// Extended resources (GPUs) cannot be overcommitted: request == limit when both are set.
				if req, ok := c.Resources.Requests[name]; ok && req.Cmp(lim) != 0 {
					errs = append(errs, fmt.Sprintf("%s.resources: extended resource %s must have request == limit", p, name))
				}
			}
		}
		for j, e := range c.Env {
			for _, msg := range utilvalidation.IsEnvVarName(e.Name) {
				errs = append(errs, fmt.Sprintf("%s.env[%d].name: %s", p, j, msg))
			}
			if e.ValueFrom != nil && e.Value != "" {
				errs = append(errs, fmt.Sprintf("%s.env[%d]: value and valueFrom are exclusive", p, j))
			}
			if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
				r := e.ValueFrom.ResourceFieldRef
				if r.ContainerName != "" && !names[r.ContainerName] && r.ContainerName != c.Name {
					errs = append(errs, fmt.Sprintf("%s.env[%d].resourceFieldRef names container %q", p, j, r.ContainerName))
				}
			}
		}
		for j, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				errs = append(errs, fmt.Sprintf("%s.volumeMounts[%d]: no volume named %q", p, j, m.Name))
			}
			// The runtime cannot create a mount point inside a ConfigMap/Secret/projected volume (read-only).
			for _, outer := range c.VolumeMounts {
				if outer.Name != m.Name && readOnlyKinds[outer.Name] && strings.HasPrefix(m.MountPath, strings.TrimSuffix(outer.MountPath, "/")+"/") {
					errs = append(errs, fmt.Sprintf("%s.volumeMounts[%d]: %s is inside %s, a read-only %s volume", p, j, m.MountPath, outer.MountPath, outer.Name))
				}
			}
		}
	}
	return errs
}

func checkPodSpec(path string, spec corev1.PodSpec, claimTemplates []corev1.PersistentVolumeClaim) []string {
	var errs []string
	volumes := map[string]bool{}
	readOnlyKinds := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			errs = append(errs, fmt.Sprintf("%s.volumes: %q is not unique", path, v.Name))
		}
		volumes[v.Name] = true
		readOnlyKinds[v.Name] = v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil
	}
	for _, c := range claimTemplates {
		if volumes[c.Name] {
			errs = append(errs, fmt.Sprintf("%s: volume %q is both a volume and a volumeClaimTemplate", path, c.Name))
		}
		volumes[c.Name] = true
	}
	if len(spec.Containers) == 0 {
		errs = append(errs, path+".containers must not be empty")
	}
	errs = append(errs, checkContainers(path+".containers", spec.Containers, volumes, readOnlyKinds)...)
	errs = append(errs, checkContainers(path+".initContainers", spec.InitContainers, volumes, readOnlyKinds)...)
	for i, t := range spec.Tolerations {
		if t.Operator == corev1.TolerationOpExists && t.Value != "" {
			errs = append(errs, fmt.Sprintf("%s.tolerations[%d]: value must be empty with operator Exists", path, i))
		}
	}
	return errs
}

func checkBuiltin(obj runtime.Object) []string {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		errs := checkMeta(o.ObjectMeta, true)
		errs = append(errs, checkSelector("spec", o.Spec.Selector, o.Spec.Template.Labels)...)
		return append(errs, checkPodSpec("spec.template.spec", o.Spec.Template.Spec, nil)...)
	case *appsv1.StatefulSet:
		errs := checkMeta(o.ObjectMeta, true)
		errs = append(errs, checkSelector("spec", o.Spec.Selector, o.Spec.Template.Labels)...)
		if o.Spec.ServiceName == "" {
			errs = append(errs, "spec.serviceName should name the governing (headless) Service")
		}
		for i, c := range o.Spec.VolumeClaimTemplates {
			if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				errs = append(errs, fmt.Sprintf("spec.volumeClaimTemplates[%d]: resources.requests.storage is required", i))
			}
		}
		return append(errs, checkPodSpec("spec.template.spec", o.Spec.Template.Spec, o.Spec.VolumeClaimTemplates)...)
	case *corev1.Pod:
		errs := checkMeta(o.ObjectMeta, true)
		return append(errs, checkPodSpec("spec", o.Spec, nil)...)
	case *policyv1.PodDisruptionBudget:
		errs := checkMeta(o.ObjectMeta, true)
		errs = append(errs, checkSelector("spec", o.Spec.Selector, nil)...)
		if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			errs = append(errs, "spec: exactly one of minAvailable and maxUnavailable")
		}
		return errs
	case *corev1.Service:
		errs := checkMeta(o.ObjectMeta, true)
		if len(o.Spec.Ports) == 0 {
			errs = append(errs, "spec.ports must not be empty")
		}
		seen := map[string]bool{}
		for i, p := range o.Spec.Ports {
			if len(o.Spec.Ports) > 1 && p.Name == "" {
				errs = append(errs, fmt.Sprintf("spec.ports[%d].name is required with several ports", i))
			}
			if seen[p.Name] {
				errs = append(errs, fmt.Sprintf("spec.ports[%d].name is not unique", i))
			}
			seen[p.Name] = true
		}
		return errs
	case *corev1.ConfigMap:
		errs := checkMeta(o.ObjectMeta, true)
		for k := range o.Data {
			for _, e := range utilvalidation.IsConfigMapKey(k) {
				errs = append(errs, fmt.Sprintf("data[%s]: %s", k, e))
			}
		}
		return errs
	case *corev1.Secret:
		errs := checkMeta(o.ObjectMeta, true)
		for k := range o.StringData {
			for _, e := range utilvalidation.IsConfigMapKey(k) {
				errs = append(errs, fmt.Sprintf("stringData[%s]: %s", k, e))
			}
		}
		return errs
	case metav1.Object:
		// Other built-in kinds (ServiceAccount, NetworkPolicy, …): typed decoding plus metadata.
		return checkMeta(metav1.ObjectMeta{Name: o.GetName(), Labels: o.GetLabels(), Annotations: o.GetAnnotations()}, true)
	}
	return nil
}

func validateDoc(doc []byte, crds map[schema.GroupVersionKind]crdSchema, strict runtime.Decoder) (string, []string) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "?", []string{err.Error()}
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil || tm.Kind == "" {
		return "?", []string{"apiVersion and kind are required"}
	}
	gvk := gv.WithKind(tm.Kind)
	var raw map[string]interface{}
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		return gvk.Kind, []string{err.Error()}
	}
	name := ""
	if md, ok := raw["metadata"].(map[string]interface{}); ok {
		name, _ = md["name"].(string)
	}
	id := fmt.Sprintf("%s %s", gvk.Kind, name)
	if scheme.Scheme.Recognizes(gvk) {
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return id, []string{err.Error()}
		}
		return id, checkBuiltin(obj)
	}
	crd, ok := crds[gvk]
	if !ok {
		return id, []string{fmt.Sprintf("no schema for %s (not a built-in kind of this Kubernetes release, no CRD in crds/)", gvk)}
	}
	var errs []string
	var md metav1.ObjectMeta
	if mdRaw, ok := raw["metadata"]; ok {
		b, _ := yaml.Marshal(mdRaw)
		if err := yaml.UnmarshalStrict(b, &md); err != nil {
			errs = append(errs, "metadata: "+err.Error())
		}
	}
	errs = append(errs, checkMeta(md, crd.namespaced)...)
	for _, e := range validation.ValidateCustomResource(nil, raw, crd.validator) {
		errs = append(errs, e.Error())
	}
	pruned := runtime.DeepCopyJSON(raw)
	unknown := pruning.PruneWithOptions(pruned, crd.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	sort.Strings(unknown)
	for _, u := range unknown {
		errs = append(errs, fmt.Sprintf("unknown field %q (not in the CRD schema; the API server would drop it)", u))
	}
	return id, errs
}

func readDocs(r io.Reader) ([][]byte, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		d, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		// Skip documents that hold only comments or whitespace (helm's "# Source:" headers).
		empty := true
		for _, line := range bytes.Split(d, []byte("\n")) {
			t := bytes.TrimSpace(line)
			if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, d)
		}
	}
}

func main() {
	crdDir := flag.String("crds", "", "directory of CustomResourceDefinition YAML files (*.crd), as written by fetch.sh (required)")
	flag.Parse()
	if *crdDir == "" {
		fmt.Fprintln(os.Stderr, "validate: -crds DIR is required (bash deploy/validate/fetch.sh writes .tools/crds)")
		os.Exit(2)
	}
	crds, err := loadCRDs(*crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}
	if len(crds) == 0 {
		fmt.Fprintf(os.Stderr, "validate: no CRDs in %s\n", *crdDir)
		os.Exit(2)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	problems, objects := 0, 0
	files := flag.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, f := range files {
		var r io.Reader = os.Stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "validate:", err)
				os.Exit(2)
			}
			defer fh.Close()
			r = fh
		}
		docs, err := readDocs(r)
		if err != nil {
			fmt.Printf("%s: %v\n", f, err)
			problems++
			continue
		}
		for _, d := range docs {
			objects++
			id, errs := validateDoc(d, crds, strict)
			for _, e := range errs {
				fmt.Printf("%s: %s: %s\n", f, id, e)
				problems++
			}
		}
	}
	fmt.Fprintf(os.Stderr, "validate: %d object(s), %d problem(s)\n", objects, problems)
	if problems > 0 {
		os.Exit(1)
	}
	if objects == 0 {
		fmt.Fprintln(os.Stderr, "validate: no objects")
		os.Exit(1)
	}
}
